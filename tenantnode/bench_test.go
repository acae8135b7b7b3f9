package tenantnode

// Benchmarks of tenant activation and of the footprint of active tenants.
// They measure and report; they never assert a duration. Results, and the
// commands that produced them, are in docs/benchmarks.md.
//
//	go test -run '^$' -bench . ./tenantnode/
//
// They drive the node only through its exported API (ServeTenant,
// CreateSuperuser, Evict, Remove), the registry of harness_test.go and the
// storage package, so they survive changes to the node's internals.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/storage"
)

// newBenchNode is newNode with the defaults pbe serve uses (1 s
// replication intervals, DefaultConfig pools) over a real registry and a
// file object store. PBE_TEST_LOG=1 logs at debug level.
func newBenchNode(tb testing.TB, mutate func(*Config)) *node {
	tb.Helper()
	if os.Getenv("PBE_TEST_LOG") == "" {
		// storage.Restore logs its fallbacks to the default logger (pbe
		// serve points that at its own); keep benchmark output clean.
		prev := slog.Default()
		slog.SetDefault(slog.New(slog.DiscardHandler))
		tb.Cleanup(func() { slog.SetDefault(prev) })
	}
	return newNode(tb, newRegistry(tb), nil, func(c *Config) {
		c.Replication = DefaultConfig().Replication
		if mutate != nil {
			mutate(c)
		}
	})
}

// benchRegister adds tenant id to the registry, owned by this node at
// epoch 1, as the control plane does when a tenant is created.
func benchRegister(reg *registry, id string) error {
	_, err := reg.apply(store.CmdCreateTenant, store.CreateTenant{Tenant: cluster.Tenant{ID: id, Node: "local", Epoch: 1}})
	return err
}

// benchRequest serves one request to tenant id through ServeTenant; hdr
// holds header pairs.
func benchRequest(m *Manager, id, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	var req *http.Request
	if body == "" {
		req = httptest.NewRequest(method, path, nil)
	} else {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	m.ServeTenant(w, req, id)
	return w
}

// benchDo is benchRequest that wants a 200.
func benchDo(m *Manager, id, method, path, body string, hdr ...string) ([]byte, error) {
	w := benchRequest(m, id, method, path, body, hdr...)
	if w.Code != http.StatusOK {
		return nil, fmt.Errorf("%s %s on %s: got %d %s, want 200", method, path, id, w.Code, strings.TrimSpace(w.Body.String()))
	}
	return w.Body.Bytes(), nil
}

// benchServe is benchDo that fails tb.
func benchServe(tb testing.TB, m *Manager, id, method, path, body string, hdr ...string) []byte {
	tb.Helper()
	out, err := benchDo(m, id, method, path, body, hdr...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// benchPostsCollection is a public collection of titled records.
const benchPostsCollection = `{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"",
	"fields":[{"name":"title","type":"text"},{"name":"created","type":"autodate","onCreate":true}]}`

// benchCreateTenant registers tenant id, creates its first superuser (which
// activates it) and returns the superuser's token.
func benchCreateTenant(n *node, id string) (string, error) {
	if err := benchRegister(n.reg, id); err != nil {
		return "", err
	}
	email, password := "admin@"+id+".test", "password-"+id
	if err := n.CreateSuperuser(context.Background(), id, email, password); err != nil {
		return "", err
	}
	out, err := benchDo(n.Manager, id, "POST", "/api/collections/_superusers/auth-with-password",
		fmt.Sprintf(`{"identity":%q,"password":%q}`, email, password))
	if err != nil {
		return "", err
	}
	var auth struct{ Token string }
	if err := json.Unmarshal(out, &auth); err != nil || auth.Token == "" {
		return "", fmt.Errorf("auth-with-password on %s: %s", id, out)
	}
	return auth.Token, nil
}

// benchCreateTenantWithPosts is benchCreateTenant plus a public "posts"
// collection holding records titled records.
func benchCreateTenantWithPosts(n *node, id string, records int) error {
	token, err := benchCreateTenant(n, id)
	if err != nil {
		return err
	}
	if _, err := benchDo(n.Manager, id, "POST", "/api/collections", benchPostsCollection, "Authorization", token); err != nil {
		return err
	}
	for i := range records {
		if _, err := benchDo(n.Manager, id, "POST", "/api/collections/posts/records", fmt.Sprintf(`{"title":"post %d"}`, i)); err != nil {
			return err
		}
	}
	return nil
}

// benchDurations are per-iteration durations recorded by a benchmark.
type benchDurations []time.Duration

// percentile returns the nearest-rank p-th percentile (0 < p <= 100).
func (l benchDurations) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report publishes p50 and p99 of l as prefix+"p50-ms" and prefix+"p99-ms".
func (l benchDurations) report(b *testing.B, prefix string) {
	b.ReportMetric(benchMS(l.percentile(50)), prefix+"p50-ms")
	b.ReportMetric(benchMS(l.percentile(99)), prefix+"p99-ms")
}

// BenchmarkManager_CreateToFirstResponse is figure 1a: a tenant is created
// in the registry and its first request (GET /api/health) activates it:
// empty databases, migrations, settings, first replica made durable in the
// object store, metadata written. Timed: registry create + first request.
// Each tenant is evicted (untimed) after its sample.
func BenchmarkManager_CreateToFirstResponse(b *testing.B) {
	n := newBenchNode(b, nil)
	ctx := context.Background()
	// The first app in a process pays one-off costs (PITFALLS.md: ~60 ms).
	if err := benchRegister(n.reg, "warmup"); err != nil {
		b.Fatal(err)
	}
	benchServe(b, n.Manager, "warmup", "GET", "/api/health", "")
	n.Evict(ctx, "warmup")

	var lat benchDurations
	prev := ""
	for b.Loop() {
		b.StopTimer()
		if prev != "" {
			n.Evict(ctx, prev)
		}
		id := fmt.Sprintf("new-%d", len(lat))
		b.StartTimer()
		start := time.Now()
		if err := benchRegister(n.reg, id); err != nil {
			b.Fatal(err)
		}
		benchServe(b, n.Manager, id, "GET", "/api/health", "")
		lat = append(lat, time.Since(start))
		prev = id
	}
	lat.report(b, "")
}

// BenchmarkManager_Reactivate is figure 1b: a tenant (a collection, 20
// records) is evicted, keeping its local copy, and its next request
// (GET /api/health) re-opens it. Timed: the first request after Evict.
// The eviction itself (app closed, final sync of an unchanged tenant) is
// untimed but reported as evict-p50-ms and evict-p99-ms.
func BenchmarkManager_Reactivate(b *testing.B) {
	n := newBenchNode(b, nil)
	ctx := context.Background()
	const id = "reactivated"
	if err := benchCreateTenantWithPosts(n, id, 20); err != nil {
		b.Fatal(err)
	}
	var lat, evict benchDurations
	for b.Loop() {
		b.StopTimer()
		if !n.IsActive(id) {
			b.Fatal("tenant not active before Evict")
		}
		start := time.Now()
		n.Evict(ctx, id)
		evict = append(evict, time.Since(start))
		b.StartTimer()
		start = time.Now()
		benchServe(b, n.Manager, id, "GET", "/api/health", "")
		lat = append(lat, time.Since(start))
	}
	lat.report(b, "")
	evict.report(b, "evict-")
}

// BenchmarkManager_ActivateFromObjectStore is figure 1c: the tenant's
// local copy is gone (Manager.Remove; the registry record stays active)
// and its first request restores it from the object store and opens it in
// a new epoch.
//
// first-request times that whole first request (GET /api/health). phases
// does the same storage work step by step with the exported APIs the node
// uses, to show where the time goes: storage.Restore of each database from
// the tenant's current epoch (with its integrity check), bootstrapping the
// PocketBase app on the restored files, attaching replication to a fresh
// replica path, and the first SyncAndWait of each database: the new
// epoch's first full snapshot upload, which the node may do before or
// after it starts serving (see startInstance). phases also times, apart,
// PRAGMA quick_check and PRAGMA integrity_check of the restored data.db:
// storage.Restore runs the latter inside restore-data.
func BenchmarkManager_ActivateFromObjectStore(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int64
	}{{"10MB", 10 << 20}, {"100MB", 100 << 20}} {
		b.Run("size="+size.name, func(b *testing.B) {
			n := newBenchNode(b, nil)
			id := "restored-" + strings.ToLower(size.name)
			dbMiB := float64(benchFillTenant(b, n, id, size.bytes)) / (1 << 20)
			b.Logf("data.db: %.1f MiB", dbMiB)
			b.Run("first-request", func(b *testing.B) {
				benchFirstRequestFromObjectStore(b, n, id)
				b.ReportMetric(dbMiB, "db-MiB")
			})
			b.Run("phases", func(b *testing.B) {
				benchRestorePhases(b, n, id)
				b.ReportMetric(dbMiB, "db-MiB")
			})
		})
	}
}

// benchFillTenant creates tenant id with a "blobs" collection and fills it
// through PocketBase's batch API with records of random (nearly
// incompressible) text until data.db holds about target bytes. It then
// drops the local copy and does one restore (timed and logged, not part of
// any figure), so that every measured restore reads a replica written by
// one activation rather than the bulk load's history. It returns the
// restored data.db's size.
func benchFillTenant(b *testing.B, n *node, id string, target int64) int64 {
	b.Helper()
	ctx := context.Background()
	token, err := benchCreateTenant(n, id)
	if err != nil {
		b.Fatal(err)
	}
	const perBatch = 200
	auth := []string{"Authorization", token}
	benchServe(b, n.Manager, id, "PATCH", "/api/settings",
		fmt.Sprintf(`{"batch":{"enabled":true,"maxRequests":%d,"timeout":60}}`, perBatch), auth...)
	benchServe(b, n.Manager, id, "POST", "/api/collections",
		`{"name":"blobs","type":"base","listRule":"","viewRule":"","fields":[{"name":"body","type":"text","max":10000}]}`, auth...)

	// 1,500 random bytes are 2,000 characters of base64: two records fill
	// a 4 KiB page, so 2 KiB of data.db per record.
	raw := make([]byte, 1500)
	type request struct {
		Method string            `json:"method"`
		URL    string            `json:"url"`
		Body   map[string]string `json:"body"`
	}
	for written := int64(0); written < target; written += perBatch * 2048 {
		batch := struct {
			Requests []request `json:"requests"`
		}{}
		for range perBatch {
			rand.Read(raw)
			batch.Requests = append(batch.Requests, request{"POST", "/api/collections/blobs/records",
				map[string]string{"body": base64.StdEncoding.EncodeToString(raw)}})
		}
		body, err := json.Marshal(batch)
		if err != nil {
			b.Fatal(err)
		}
		benchServe(b, n.Manager, id, "POST", "/api/batch", string(body), auth...)
	}

	if err := n.Remove(ctx, id); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	benchServe(b, n.Manager, id, "GET", "/api/health", "")
	b.Logf("first restore, from the bulk load's replica history: %v", time.Since(start).Round(time.Millisecond))
	fi, err := os.Stat(filepath.Join(n.dir, "tenants", id, "pb_data", "data.db"))
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// benchPruneEpochs deletes tenant id's replicas of epochs older than the
// current one (nothing reads them any more), so long runs do not fill the
// disk. It returns the current epoch.
func benchPruneEpochs(b *testing.B, n *node, id string) uint64 {
	b.Helper()
	ctx := context.Background()
	t, err := n.reg.Tenant(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	prefix, err := storage.TenantPrefix(id)
	if err != nil {
		b.Fatal(err)
	}
	for e := uint64(1); e < t.Epoch; e++ {
		if err := n.objects.DeletePrefix(ctx, fmt.Sprintf("%slitestream/%d/", prefix, e)); err != nil {
			b.Fatal(err)
		}
	}
	return t.Epoch
}

func benchFirstRequestFromObjectStore(b *testing.B, n *node, id string) {
	ctx := context.Background()
	var lat benchDurations
	for b.Loop() {
		b.StopTimer()
		if err := n.Remove(ctx, id); err != nil {
			b.Fatal(err)
		}
		benchPruneEpochs(b, n, id)
		b.StartTimer()
		start := time.Now()
		benchServe(b, n.Manager, id, "GET", "/api/health", "")
		lat = append(lat, time.Since(start))
	}
	lat.report(b, "")
}

// benchPhaseNames are the storage steps of activating a tenant from the
// object store, in order.
var benchPhaseNames = []string{"restore-data", "restore-aux", "bootstrap", "attach", "first-sync-data", "first-sync-aux"}

// benchReplicatedDBs are the tenant databases the node replicates.
var benchReplicatedDBs = []string{"data.db", "auxiliary.db"}

// benchPhasesScratch is the tenant id whose replica paths receive the
// phases' first snapshots; no tenant of that name exists.
const benchPhasesScratch = "phases-scratch"

func benchRestorePhases(b *testing.B, n *node, id string) {
	ctx := context.Background()
	// The tenant must not be written while it is read: stop it (final sync).
	n.Evict(ctx, id)
	epoch := benchPruneEpochs(b, n, id)
	repl, err := storage.NewReplicator(DefaultConfig().Replication, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := repl.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer repl.Close(ctx)
	client := func(id string, epoch uint64, db string) litestream.ReplicaClient {
		prefix, err := storage.ReplicaPrefix(id, epoch, db)
		if err != nil {
			b.Fatal(err)
		}
		c, err := n.objects.ReplicaClient(prefix)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}

	phase := make(map[string]benchDurations)
	var total, quickCheck, integrityCheck benchDurations
	var cleanup func()
	for b.Loop() {
		b.StopTimer()
		if cleanup != nil {
			cleanup()
		}
		dir, err := os.MkdirTemp(n.dir, "phases-")
		if err != nil {
			b.Fatal(err)
		}
		pbData, meta := filepath.Join(dir, "pb_data"), filepath.Join(dir, "litestream")
		if err := os.MkdirAll(pbData, 0o750); err != nil {
			b.Fatal(err)
		}
		scratchEpoch := uint64(len(total) + 1)
		var app *core.BaseApp
		var attached []string
		cleanup = func() {
			if app != nil {
				_ = app.OnTerminate().Trigger(&core.TerminateEvent{App: app}, func(e *core.TerminateEvent) error {
					return e.App.ResetBootstrapState()
				})
			}
			for _, path := range attached {
				if err := repl.Detach(ctx, path); err != nil {
					b.Fatal(err)
				}
			}
			prefix, _ := storage.TenantPrefix(benchPhasesScratch)
			if err := n.objects.DeletePrefix(ctx, prefix); err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(dir)
		}
		b.StartTimer()

		start := time.Now()
		last := start
		mark := func(name string, err error) {
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			now := time.Now()
			phase[name] = append(phase[name], now.Sub(last))
			last = now
		}
		for _, db := range benchReplicatedDBs {
			found, err := storage.Restore(ctx, client(id, epoch, db), filepath.Join(pbData, db))
			if err == nil && !found {
				err = fmt.Errorf("no replica of %s at epoch %d", db, epoch)
			}
			mark(map[string]string{"data.db": "restore-data", "auxiliary.db": "restore-aux"}[db], err)
		}
		cfg := DefaultConfig()
		app = core.NewBaseApp(core.BaseAppConfig{DataDir: pbData, DataMaxIdleConns: cfg.DataMaxIdleConns, AuxMaxIdleConns: cfg.AuxMaxIdleConns})
		err = app.Bootstrap()
		if err == nil {
			err = app.RunAllMigrations()
		}
		mark("bootstrap", err)
		var dbs []*litestream.DB
		for _, db := range benchReplicatedDBs {
			r, err := repl.Attach(filepath.Join(pbData, db), filepath.Join(meta, db), client(benchPhasesScratch, scratchEpoch, db))
			if err != nil {
				b.Fatal(err)
			}
			attached = append(attached, filepath.Join(pbData, db))
			dbs = append(dbs, r)
		}
		mark("attach", nil)
		mark("first-sync-data", dbs[0].SyncAndWait(ctx))
		mark("first-sync-aux", dbs[1].SyncAndWait(ctx))
		total = append(total, time.Since(start))

		b.StopTimer()
		for _, c := range []struct {
			pragma string
			took   *benchDurations
		}{{"quick_check", &quickCheck}, {"integrity_check", &integrityCheck}} {
			// A connection of its own, as storage.Restore's check has:
			// the app's connections may hold the pages in their cache.
			check := time.Now()
			db, err := sql.Open("sqlite", filepath.Join(pbData, "data.db"))
			if err != nil {
				b.Fatal(err)
			}
			var result string
			err = db.QueryRow("PRAGMA " + c.pragma).Scan(&result)
			_ = db.Close()
			if err != nil || result != "ok" {
				b.Fatalf("%s: %q %v", c.pragma, result, err)
			}
			*c.took = append(*c.took, time.Since(check))
		}
		b.StartTimer()
	}
	if cleanup != nil {
		cleanup()
	}
	for _, name := range benchPhaseNames {
		b.ReportMetric(benchMS(phase[name].percentile(50)), name+"-p50-ms")
	}
	b.ReportMetric(benchMS(quickCheck.percentile(50)), "quick-check-data-p50-ms")
	b.ReportMetric(benchMS(integrityCheck.percentile(50)), "integrity-check-data-p50-ms")
	total.report(b, "total-")
}

// BenchmarkManager_ActiveTenantFootprint is figure 3: the process's RSS,
// open file descriptors and goroutines per active tenant, with N tenants
// active at once (MaxTenants above N): idle (activated by one request),
// warm (then a list and a create each), busy (then 8 concurrent lists
// each), rested (busy, then idle past idleConnTimeout) and after evicting
// them all again (what leaks). Each
// sub-benchmark runs its measurement once (it takes far longer than the
// default -benchtime; do not give it a -benchtime=Nx). tenants=1000 takes
// a few minutes and runs only when the -bench pattern names it:
// -bench 'ActiveTenantFootprint/tenants=1000'.
func BenchmarkManager_ActiveTenantFootprint(b *testing.B) {
	for _, count := range []int{200, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", count), func(b *testing.B) {
			if count > 200 && !strings.Contains(flag.Lookup("test.bench").Value.String(), fmt.Sprint(count)) {
				b.Skipf("select explicitly with -bench 'ActiveTenantFootprint/tenants=%d'", count)
			}
			benchFootprint(b, count)
		})
	}
}

// benchUsage is what the process holds at one moment.
type benchUsage struct {
	rssKiB     int64
	fds        int
	goroutines int
	fdKinds    map[string]int // open files by base name (data.db-wal, ...) or kind (socket, pipe, ...)
}

// benchFDKind names what a descriptor's target is.
func benchFDKind(target string) string {
	if kind, _, ok := strings.Cut(target, ":["); ok {
		return kind // socket:[123], pipe:[456]
	}
	if strings.HasPrefix(target, "anon_inode:") {
		return target
	}
	return filepath.Base(target)
}

// perTenant describes what each of count tenants added since base, as
// "data.db-wal=2.00 ...".
func (u benchUsage) perTenant(base benchUsage, count int) string {
	var parts []string
	for k, v := range u.fdKinds {
		if d := v - base.fdKinds[k]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s=%.2f", k, float64(d)/float64(count)))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// benchMeasureUsage lets background work settle, collects garbage, returns
// freed memory to the OS and reads VmRSS and /proc/self/fd.
func benchMeasureUsage(b *testing.B) benchUsage {
	b.Helper()
	time.Sleep(3 * time.Second) // replication monitors (1 s) and first syncs settle
	runtime.GC()
	debug.FreeOSMemory()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	var u benchUsage
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &u.rssKiB)
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	u.fds = len(fds) - 1 // the directory being read
	u.fdKinds = map[string]int{}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil {
			u.fdKinds[benchFDKind(target)]++
		}
	}
	u.goroutines = runtime.NumGoroutine()
	return u
}

// benchRaiseFileLimit lifts the soft open-file limit to the hard one, as
// pbe serve does at start-up, and returns the limit in force.
func benchRaiseFileLimit(b *testing.B) uint64 {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatal(err)
		}
	}
	return lim.Cur
}

// benchParallel runs fn(i) for i in [0, n) on workers goroutines and
// returns the first error.
func benchParallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func benchFootprint(b *testing.B, count int) {
	limit := benchRaiseFileLimit(b)
	n := newBenchNode(b, func(c *Config) { c.MaxTenants = count + 10 })
	ctx := context.Background()
	ids := make([]string, count)
	for i := range ids {
		ids[i] = fmt.Sprintf("tenant-%04d", i)
	}

	// Create every tenant with a superuser and a public posts collection,
	// then evict them all: the baseline has the code paths warm and no
	// tenant active.
	if err := benchParallel(count, 4, func(i int) error { return benchCreateTenantWithPosts(n, ids[i], 0) }); err != nil {
		b.Fatal(err)
	}
	evictAll := func() {
		_ = benchParallel(count, 8, func(i int) error { n.Evict(ctx, ids[i]); return nil })
	}
	evictAll()
	if got := n.Active(); got != 0 {
		b.Fatalf("active after evicting all: got %d, want 0", got)
	}
	base := benchMeasureUsage(b)

	start := time.Now()
	for _, id := range ids {
		benchServe(b, n.Manager, id, "GET", "/api/health", "")
	}
	activation := time.Since(start)
	if got := n.Active(); got != count {
		b.Fatalf("active: got %d, want %d", got, count)
	}
	idle := benchMeasureUsage(b)

	for i, id := range ids {
		benchServe(b, n.Manager, id, "GET", "/api/collections/posts/records", "")
		benchServe(b, n.Manager, id, "POST", "/api/collections/posts/records", fmt.Sprintf(`{"title":"hello %d"}`, i))
	}
	warm := benchMeasureUsage(b)

	// Busy: 8 concurrent lists per tenant open pooled read connections,
	// up to DataMaxIdleConns of which stay open. Running out of file
	// descriptors is a result here, not a benchmark failure: the phase
	// ends (and says so) when a request fails or when fewer than
	// fdMargin descriptors are left, so that the process can still measure.
	const fdMargin = 100
	busyTenants := 0
	for _, id := range ids {
		if fds, err := os.ReadDir("/proc/self/fd"); err != nil || uint64(len(fds)) > limit-fdMargin {
			b.Logf("busy phase stopped at tenant %d of %d: %d fds open, limit %d (%v)", busyTenants+1, count, len(fds)-1, limit, err)
			break
		}
		err := benchParallel(8, 8, func(int) error {
			_, err := benchDo(n.Manager, id, "GET", "/api/collections/posts/records", "")
			return err
		})
		if err != nil {
			fds, _ := os.ReadDir("/proc/self/fd")
			b.Logf("busy phase stopped at tenant %d of %d: %v; %d fds open, limit %d", busyTenants+1, count, err, len(fds)-1, limit)
			break
		}
		busyTenants++
	}
	busy := benchMeasureUsage(b)

	// Rested: every tenant still active, idle for longer than the pools
	// keep idle connections (database/sql checks once per idle period).
	time.Sleep(2*idleConnTimeout + time.Second)
	rested := benchMeasureUsage(b)

	evictAll()
	after := benchMeasureUsage(b)

	per := func(z benchUsage) (mib, fds, gs float64) {
		return float64(z.rssKiB-base.rssKiB) / 1024 / float64(count),
			float64(z.fds-base.fds) / float64(count),
			float64(z.goroutines-base.goroutines) / float64(count)
	}
	idleMiB, idleFds, idleGs := per(idle)
	warmMiB, warmFds, warmGs := per(warm)
	leftMiB, leftFds, _ := per(after)
	// Only the first busyTenants were made busy: warm plus what each of
	// them added.
	busyMiB := warmMiB + float64(busy.rssKiB-warm.rssKiB)/1024/float64(max(busyTenants, 1))
	busyFds := warmFds + float64(busy.fds-warm.fds)/float64(max(busyTenants, 1))

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(idleMiB, "idle-MiB/tenant")
	b.ReportMetric(idleFds, "idle-fds/tenant")
	b.ReportMetric(idleGs, "idle-goroutines/tenant")
	b.ReportMetric(warmMiB, "warm-MiB/tenant")
	b.ReportMetric(warmFds, "warm-fds/tenant")
	b.ReportMetric(warmGs, "warm-goroutines/tenant")
	b.ReportMetric(float64(warm.fds), "warm-fds-total")
	b.ReportMetric(busyMiB, "busy-MiB/tenant")
	b.ReportMetric(busyFds, "busy-fds/tenant")
	b.ReportMetric(float64(busy.fds), "busy-fds-total")
	b.ReportMetric(float64(busyTenants), "busy-tenants")
	restedMiB, restedFds, _ := per(rested)
	b.ReportMetric(restedMiB, "rested-MiB/tenant")
	b.ReportMetric(restedFds, "rested-fds/tenant")
	b.ReportMetric(float64(rested.fds), "rested-fds-total")
	b.ReportMetric(leftMiB, "evicted-MiB/tenant")
	b.ReportMetric(leftFds, "evicted-fds/tenant")
	b.ReportMetric(float64(limit), "fd-limit")
	b.ReportMetric(benchMS(activation)/float64(count), "activate-ms/tenant")
	for _, s := range []struct {
		name string
		u    benchUsage
	}{{"baseline", base}, {"idle", idle}, {"warm", warm}, {"busy", busy}, {"rested", rested}, {"all evicted", after}} {
		b.Logf("%-11s %7d KiB RSS, %6d fds, %6d goroutines; fds per tenant: %s",
			s.name, s.u.rssKiB, s.u.fds, s.u.goroutines, s.u.perTenant(base, count))
	}
}
