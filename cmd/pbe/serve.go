package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/gateway"
	"github.com/pbe/pbe/health"
	"github.com/pbe/pbe/storage"
	_ "github.com/pbe/pbe/storage/file" // file:// object stores
	"github.com/pbe/pbe/tenantnode"
)

// serveOptions are the settings of 'pbe serve'.
type serveOptions struct {
	configFile          string
	mode                string
	httpAddr            string
	dir                 string
	objects             string
	domain              string
	publicURL           string
	nodeID              string
	maxTenants          int
	idleTimeout         time.Duration
	allowTenantHeader   bool
	maxBody             byteSize
	deleteGrace         time.Duration
	replicationInterval time.Duration
	shutdownTimeout     time.Duration
	purgeInterval       time.Duration // not a flag: how often deleted tenants past their grace are purged
	logLevel            string
	logFormat           string
}

func defaultServeOptions() serveOptions {
	return serveOptions{
		mode:                string(cluster.ModeAllInOne),
		httpAddr:            "127.0.0.1:8090",
		dir:                 "pbe_data",
		domain:              "localhost",
		nodeID:              "local",
		maxTenants:          tenantnode.DefaultMaxTenants,
		idleTimeout:         tenantnode.DefaultIdleTimeout,
		allowTenantHeader:   true,
		maxBody:             gateway.DefaultMaxBodyBytes,
		deleteGrace:         controlplane.DefaultDeleteGrace,
		replicationInterval: time.Second,
		shutdownTimeout:     30 * time.Second,
		purgeInterval:       controlplane.DefaultPurgeInterval,
		logLevel:            "info",
		logFormat:           "text",
	}
}

func newServeCmd() *cobra.Command {
	o := defaultServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the platform (all-in-one by default: control plane, tenant node and gateway on one port)",
		Long: `Run the platform.

Every flag can also be set with an environment variable (PBE_ and the flag
name in capitals with underscores: --max-tenants is PBE_MAX_TENANTS) or in a
config file given with --config (YAML or JSON, keys are the flag names).
Precedence: flags, then environment, then config file, then defaults.
PBE_ADMIN_TOKEN sets the initial operator token (environment only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return usageError{err}
			}
			return runServe(cmd.Context(), o, os.Stdout, os.Stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "config file (YAML or JSON; keys are these flag names)")
	f.StringVar(&o.mode, "mode", o.mode, "role to run: all-in-one")
	f.StringVar(&o.httpAddr, "http", o.httpAddr, "address to serve HTTP on")
	f.StringVar(&o.dir, "dir", o.dir, "data directory (control-plane state, tenant cache, admin.token)")
	f.StringVar(&o.objects, "objects", "", "object store URL where tenants are durable (default file://{dir}/objects)")
	f.StringVar(&o.domain, "domain", o.domain, "base domain: tenants are served at {tenant}.{domain}, the platform API at {domain}")
	f.StringVar(&o.publicURL, "public-url", "", "tenant URL template with {tenant}, as clients reach it (default http://{tenant}.{domain}:{port of --http})")
	f.StringVar(&o.nodeID, "node-id", o.nodeID, "this node's id")
	f.IntVar(&o.maxTenants, "max-tenants", o.maxTenants, "tenants active at once on this node; past it the least recently used idle one is evicted")
	f.DurationVar(&o.idleTimeout, "idle-timeout", o.idleTimeout, "evict a tenant after this long without requests")
	f.BoolVar(&o.allowTenantHeader, "allow-tenant-header", o.allowTenantHeader, "let the X-Tenant-ID header select a tenant on the base domain")
	f.Var(&o.maxBody, "max-body", "largest request body accepted (e.g. 32MiB)")
	f.DurationVar(&o.deleteGrace, "delete-grace", o.deleteGrace, "how long a deleted tenant's data is kept so it can be restored")
	f.DurationVar(&o.replicationInterval, "replication-interval", o.replicationInterval, "how often tenant changes are shipped to the object store (the replication lag)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", o.shutdownTimeout, "how long a graceful stop may take")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", o.logFormat, "text or json")
	return cmd
}

// validate checks the options and fills derived defaults.
func (o *serveOptions) validate() error {
	mode, err := cluster.ParseMode(o.mode)
	if err != nil {
		return err
	}
	if mode != cluster.ModeAllInOne {
		return fmt.Errorf("--mode=%s is not available in this build; use --mode=all-in-one", mode)
	}
	if _, _, err := net.SplitHostPort(o.httpAddr); err != nil {
		return fmt.Errorf("--http %q: want host:port, e.g. 127.0.0.1:8090", o.httpAddr)
	}
	if o.objects == "" {
		abs, err := filepath.Abs(filepath.Join(o.dir, "objects"))
		if err != nil {
			return err
		}
		o.objects = "file://" + abs
	}
	if o.publicURL != "" && !strings.Contains(o.publicURL, "{tenant}") {
		return fmt.Errorf("--public-url %q must contain {tenant}", o.publicURL)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return err
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	return nil
}

// portSuffix is ":port" of addr unless it is HTTP's default.
func portSuffix(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	if port == "" || port == "80" {
		return ""
	}
	return ":" + port
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(o serveOptions, w io.Writer) *slog.Logger {
	level, _ := parseLevel(o.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// platform is the all-in-one process: its parts, in start order.
type platform struct {
	store    *store.Store
	cp       *controlplane.ControlPlane
	node     *tenantnode.Manager
	server   *http.Server
	listener net.Listener
}

func runServe(ctx context.Context, o serveOptions, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return usageError{err}
	}
	logger := newLogger(o, stderr)
	slog.SetDefault(logger)
	raiseFileLimit(logger)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return err
	}
	p, err := startPlatform(ctx, &o, ln, logger)
	if err != nil {
		return err
	}
	printBanner(stdout, o, p.cp.GeneratedToken())

	errc := make(chan error, 1)
	go func() { errc <- p.server.Serve(p.listener) }()
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-errc:
		logger.Error("http server stopped", "error", err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if e := p.stop(stopCtx); e != nil && err == nil {
		err = e
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// startPlatform opens every part behind listener ln; on failure it stops
// what it started (ln included).
func startPlatform(ctx context.Context, o *serveOptions, ln net.Listener, logger *slog.Logger) (_ *platform, err error) {
	p := &platform{listener: ln}
	o.httpAddr = ln.Addr().String()
	if o.publicURL == "" {
		o.publicURL = "http://{tenant}." + o.domain + portSuffix(o.httpAddr)
	}
	logger.Info("starting pbe", "version", version, "mode", o.mode, "http", o.httpAddr, "dir", o.dir, "objects", o.objects, "domain", o.domain,
		"public_url", o.publicURL, "max_tenants", o.maxTenants, "idle_timeout", o.idleTimeout,
		"allow_tenant_header", o.allowTenantHeader, "max_body", o.maxBody.String(), "delete_grace", o.deleteGrace,
		"admin_token_from_env", os.Getenv("PBE_ADMIN_TOKEN") != "")
	defer func() {
		if err != nil {
			_ = p.stop(context.Background())
		}
	}()
	objects, err := storage.Open(ctx, o.objects)
	if err != nil {
		return nil, err
	}
	cpDir := filepath.Join(o.dir, "control-plane")
	if p.store, err = store.Open(filepath.Join(cpDir, "state"), logger); err != nil {
		return nil, fmt.Errorf("open control-plane store: %w", err)
	}
	cpCfg := controlplane.DefaultConfig()
	cpCfg.NodeID = o.nodeID
	cpCfg.Raft.Dir = filepath.Join(cpDir, "raft")
	cpCfg.AdminToken = os.Getenv("PBE_ADMIN_TOKEN")
	cpCfg.AdminTokenFile = filepath.Join(o.dir, "admin.token")
	cpCfg.DeleteGrace = o.deleteGrace
	cpCfg.PurgeInterval = o.purgeInterval
	cpCfg.PublicURL = o.publicURL
	cpCfg.Logger = logger
	if p.cp, err = controlplane.New(cpCfg, p.store, objects); err != nil {
		return nil, err
	}

	tnCfg := tenantnode.DefaultConfig()
	tnCfg.NodeID = o.nodeID
	tnCfg.DataDir = o.dir
	tnCfg.MaxTenants = o.maxTenants
	tnCfg.IdleTimeout = o.idleTimeout
	tnCfg.PublicURL = o.publicURL
	tnCfg.Replication.MonitorInterval = o.replicationInterval
	tnCfg.Replication.SyncInterval = o.replicationInterval
	tnCfg.Logger = logger
	if p.node, err = tenantnode.NewManager(tnCfg, objects, p.cp); err != nil {
		return nil, err
	}
	p.cp.SetProvisioner(p.node)

	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.cp.Start(startCtx); err != nil {
		return nil, err
	}
	if err := p.node.Start(startCtx); err != nil {
		return nil, err
	}

	checks := health.New()
	checks.Add("control_plane", p.cp.Ready)
	checks.Add("object_store", objects.Ping)
	checks.Add("tenant_node", func(context.Context) error { return p.node.Ready() })

	gwCfg := gateway.DefaultConfig()
	gwCfg.Domain = o.domain
	gwCfg.AllowTenantHeader = o.allowTenantHeader
	gwCfg.MaxBodyBytes = int64(o.maxBody)
	gwCfg.Logger = logger
	gw, err := gateway.New(gwCfg, baseHandler(p.cp.Handler(), checks), p.node)
	if err != nil {
		return nil, err
	}
	p.server = &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// stop shuts the parts down in reverse order: no new connections, tenants
// stopped (realtime streams end, final sync), then the control plane.
func (p *platform) stop(ctx context.Context) error {
	var errs []error
	shutdownDone := make(chan struct{})
	if p.server != nil {
		go func() {
			defer close(shutdownDone)
			if err := p.server.Shutdown(ctx); err != nil {
				_ = p.server.Close()
			}
		}()
	} else {
		close(shutdownDone)
	}
	if p.listener != nil {
		p.listener.Close() // in case Serve never ran
	}
	if p.node != nil {
		if err := p.node.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop tenant node: %w", err))
		}
	}
	<-shutdownDone
	if p.cp != nil {
		if err := p.cp.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop control plane: %w", err))
		}
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close control-plane store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// baseHandler serves the base domain: the platform API and health.
func baseHandler(api http.Handler, checks *health.Checker) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/cp/", api)
	mux.Handle("GET /healthz", health.LiveHandler())
	mux.Handle("GET /readyz", checks.ReadyHandler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, `{"name":"pbe","api":"/api/cp/","health":"/healthz","ready":"/readyz"}`+"\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		cluster.WriteJSONError(w, http.StatusNotFound, cluster.ErrorBody{
			Code: "not_found", Message: "no such page on the platform host; tenants are served at {tenant}." + hostOnly(r.Host),
		})
	})
	return mux
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func printBanner(w io.Writer, o serveOptions, token string) {
	base := "http://" + o.domain + portSuffix(o.httpAddr)
	tokenFile := filepath.Join(o.dir, "admin.token")
	fmt.Fprintf(w, "pbe %s is serving on http://%s\n", o.mode, o.httpAddr)
	fmt.Fprintf(w, "  platform API:  %s/api/cp/  (Authorization: Bearer <operator token>)\n", base)
	fmt.Fprintf(w, "  tenants:       %s/api/  (admin UI: %s/_/)\n", o.publicURL, o.publicURL)
	if token != "" {
		fmt.Fprintf(w, "\nOperator token (shown once; saved to %s):\n  %s\n", tokenFile, token)
	}
	fmt.Fprintf(w, "\nCreate a tenant:\n  curl -X POST %s/api/cp/tenants -H \"Authorization: Bearer $(cat %s)\" \\\n"+
		"    -H 'Content-Type: application/json' -d '{\"id\":\"acme\",\"admin\":{\"email\":\"admin@acme.test\",\"password\":\"change-me-now\"}}'\n"+
		"  or: pbe tenant create acme --admin-email admin@acme.test --admin-password change-me-now\n", base, tokenFile)
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// active tenant holds a few SQLite files open.
func raiseFileLimit(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			logger.Warn("could not raise the open-file limit", "error", err)
			return
		}
	}
	logger.Debug("open-file limit", "limit", strconv.FormatUint(lim.Cur, 10))
}
