package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	_ "github.com/pocketbase/pocketbase/migrations" // PocketBase's system migrations
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/mailer"
	"github.com/pocketbase/pocketbase/ui"

	"github.com/pbe/pbe/internal/egress"
	"github.com/pbe/pbe/tenantnode/hooks"
)

// errBackupRestore is what a tenant gets for PocketBase's own backup
// restore, which ends in an execve of the whole process (every tenant down).
var errBackupRestore = errors.New("restoring a PocketBase backup in place is disabled on this platform (it restarts the whole process); restore the tenant to a point in time with POST /api/cp/tenants/{id}/pitr on the platform API")

// errNoSMTP is what a tenant gets for mail without an SMTP server:
// PocketBase would otherwise run the node's sendmail program for it.
var errNoSMTP = errors.New("this tenant has no SMTP server: set one in the admin UI (Settings > Mail settings) to send e-mail")

// guardMail lets a tenant's mail go only to an SMTP server the egress
// policy allows. The mailer dials by itself, so the server's name is
// resolved and checked just before sending.
func guardMail(guard egress.Guard) func(*core.MailerEvent) error {
	return func(e *core.MailerEvent) error {
		c, ok := e.Mailer.(*mailer.SMTPClient)
		if !ok {
			return errNoSMTP
		}
		ctx, cancel := context.WithTimeout(context.Background(), smtpResolveTimeout)
		defer cancel()
		if err := guard.CheckHost(ctx, c.Host); err != nil {
			return fmt.Errorf("the SMTP server of this tenant's mail settings cannot be used: %w", err)
		}
		return e.Next()
	}
}

// smtpResolveTimeout bounds resolving a tenant's SMTP server name.
const smtpResolveTimeout = 10 * time.Second

// pbDBOptimizeJob is PocketBase's daily job that runs wal_checkpoint(TRUNCATE);
// with Litestream attached it waits out the busy timeout and stalls every
// write of the tenant (PITFALLS.md). Litestream does the checkpointing.
const pbDBOptimizeJob = "__pbDBOptimize__"

// optimizeJob replaces it with PRAGMA optimize only.
const optimizeJob = "__pbeOptimize__"

// openApp bootstraps the PocketBase app whose data directory is dir and
// runs its migrations.
func openApp(dir, tenantID string, cfg Config) (*core.BaseApp, error) {
	app := core.NewBaseApp(core.BaseAppConfig{
		DataDir:          dir,
		DBConnect:        dbConnect,
		DataMaxOpenConns: cfg.DataMaxOpenConns,
		DataMaxIdleConns: cfg.DataMaxIdleConns,
		AuxMaxOpenConns:  cfg.AuxMaxOpenConns,
		AuxMaxIdleConns:  cfg.AuxMaxIdleConns,
	})
	app.Cron().Remove(pbDBOptimizeJob)
	app.Cron().MustAdd(optimizeJob, optimizeSchedule(tenantID), func() { optimize(app) })
	app.OnBackupRestore().BindFunc(func(e *core.BackupEvent) error {
		return errBackupRestore
	})
	app.OnBackupCreate().BindFunc(createBackup)
	// Last in the chain, so that no tenant hook bound after it can change
	// the mail client's server once it has been checked.
	app.OnMailerSend().Bind(&hook.Handler[*core.MailerEvent]{Func: guardMail(cfg.Egress), Priority: math.MaxInt})
	if err := app.Bootstrap(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := app.RunAllMigrations(); err != nil {
		closeApp(app)
		return nil, fmt.Errorf("migrations: %w", err)
	}
	for _, b := range []dbx.Builder{app.ConcurrentDB(), app.NonconcurrentDB(), app.AuxConcurrentDB(), app.AuxNonconcurrentDB()} {
		if db, ok := b.(*dbx.DB); ok {
			db.DB().SetConnMaxIdleTime(idleConnTimeout)
		}
	}
	return app, nil
}

// idleConnTimeout closes a tenant's pooled SQLite connections that have
// been idle this long. A tenant that once served concurrent requests would
// otherwise keep its busiest pool (two descriptors per connection) for as
// long as it stays active, and a node's open files would grow with every
// tenant that was ever busy rather than with those busy now.
const idleConnTimeout = 10 * time.Second

// sqlitePragmas are set on every connection of a tenant's databases. They
// are PocketBase's own choices (busy timeout first, so a connection waits
// rather than fail while another sets WAL mode) with one change:
// wal_autocheckpoint(0). Litestream holds a read transaction open on each
// replicated database and checkpoints after it has shipped the WAL; with
// SQLite's automatic checkpoint on, every commit past 1,000 WAL pages tries
// a checkpoint that cannot complete but first sorts the whole WAL, which
// halved write throughput in the benchmarks (docs/benchmarks.md).
const sqlitePragmas = "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=journal_size_limit(200000000)" +
	"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)&_pragma=cache_size(-32000)" +
	"&_pragma=wal_autocheckpoint(0)"

// dbConnect opens a tenant database with sqlitePragmas (modernc's driver,
// the only SQLite driver in the process: PocketBase's and Litestream's).
func dbConnect(dbPath string) (*dbx.DB, error) {
	return dbx.Open("sqlite", dbPath+sqlitePragmas)
}

// optimizeSchedule spreads the tenants' daily optimize over the day so they
// do not all run in the same minute.
func optimizeSchedule(tenantID string) string {
	h := fnv.New32a()
	h.Write([]byte(tenantID))
	n := h.Sum32()
	return fmt.Sprintf("%d %d * * *", n%60, (n/60)%24)
}

func optimize(app core.App) {
	if _, err := app.NonconcurrentDB().NewQuery("PRAGMA optimize").Execute(); err != nil {
		app.Logger().Warn("periodic PRAGMA optimize failed", slog.String("error", err.Error()))
	}
}

// backupRestorePath matches PocketBase's backup restore endpoint.
var backupRestorePath = regexp.MustCompile(`^/api/backups/[^/]+/restore/?$`)

// buildHandler returns the app's full HTTP surface (API and admin UI) the way
// apis.Serve builds it, without a listener, and runs the app's OnServe hooks
// (which start its cron).
func buildHandler(app core.App, hp *hooks.Pool) (http.Handler, error) {
	router, err := apis.NewRouter(app)
	if err != nil {
		return nil, err
	}
	router.Bind(apis.CORS(apis.CORSConfig{
		AllowOrigins: []string{"*"},
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodDelete},
	}))
	router.BindFunc(func(e *core.RequestEvent) error {
		if e.Request.Method == http.MethodPost && backupRestorePath.MatchString(e.Request.URL.Path) {
			return apis.NewBadRequestError(errBackupRestore.Error(), nil)
		}
		return e.Next()
	})
	if hp != nil {
		hp.BindRouter(router)
	}
	router.GET("/_/{path...}", apis.Static(ui.DistDirFS, false)).
		BindFunc(adminUIHeaders).
		Bind(apis.Gzip())

	var handler http.Handler
	event := &core.ServeEvent{App: app, Router: router, Server: &http.Server{}}
	err = app.OnServe().Trigger(event, func(e *core.ServeEvent) error {
		mux, err := e.Router.BuildMux()
		handler = mux
		return err
	})
	if err != nil {
		return nil, err
	}
	return handler, nil
}

// adminUIHeaders sets the admin UI's caching and content security policy as
// PocketBase's own server does.
func adminUIHeaders(e *core.RequestEvent) error {
	if e.Request.PathValue(apis.StaticWildcardParam) != "" {
		e.Response.Header().Set("Cache-Control", "max-age=1209600, stale-while-revalidate=86400")
	}
	if e.Response.Header().Get("Content-Security-Policy") == "" {
		e.Response.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' http://127.0.0.1:* https://tile.openstreetmap.org data: blob:; connect-src 'self' http://127.0.0.1:* https://nominatim.openstreetmap.org; script-src 'self' 'sha256-GRUzBA7PzKYug7pqxv5rJaec5bwDCw1Vo6/IXwvD3Tc='")
	}
	return e.Next()
}

// closeApp shuts an app down: realtime clients are discarded (their
// streams end), then OnTerminate runs (it stops the logger and cron) and
// the database pools close.
func closeApp(app core.App) error {
	for _, c := range app.SubscriptionsBroker().Clients() {
		c.Discard()
	}
	return app.OnTerminate().Trigger(&core.TerminateEvent{App: app}, func(e *core.TerminateEvent) error {
		return e.App.ResetBootstrapState()
	})
}
