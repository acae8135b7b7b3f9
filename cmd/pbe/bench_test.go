package main

// Benchmarks of the all-in-one platform over loopback HTTP, against the
// same PocketBase served directly. They measure and report; they never
// assert a duration. Results and commands are in docs/benchmarks.md.
//
//	go test -run '^$' -bench . ./cmd/pbe/

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	_ "github.com/pocketbase/pocketbase/migrations" // PocketBase's system migrations
	"github.com/pocketbase/pocketbase/ui"
)

// benchClients is how many concurrent keep-alive clients drive the
// throughput benchmarks.
const benchClients = 16

// benchLogger discards logs unless PBE_TEST_LOG names a level.
func benchLogger() *slog.Logger {
	if v := os.Getenv("PBE_TEST_LOG"); v != "" {
		var level slog.Level
		_ = level.UnmarshalText([]byte(v))
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.DiscardHandler)
}

// benchCall sends one request and returns its status and body. hdr holds
// header pairs.
func benchCall(client *http.Client, method, url, body string, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// benchMustCall fails b unless the request answers want.
func benchMustCall(b *testing.B, client *http.Client, want int, method, url, body string, hdr ...string) []byte {
	b.Helper()
	status, out, err := benchCall(client, method, url, body, hdr...)
	if err != nil {
		b.Fatalf("%s %s: %v", method, url, err)
	}
	if status != want {
		b.Fatalf("%s %s: got %d %s, want %d", method, url, status, out, want)
	}
	return out
}

// benchPlatform is pbe all-in-one in the benchmark process, with the
// defaults of pbe serve (1 s replication interval, 200 tenants).
type benchPlatform struct {
	p      *platform
	port   string
	token  string
	client *http.Client
}

func startBenchPlatform(b *testing.B, mutate ...func(*serveOptions)) *benchPlatform {
	b.Helper()
	o := defaultServeOptions()
	o.httpAddr = "127.0.0.1:0"
	o.dir = b.TempDir()
	for _, m := range mutate {
		m(&o)
	}
	if err := o.validate(); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		b.Fatal(err)
	}
	p, err := startPlatform(context.Background(), &o, ln, benchLogger())
	if err != nil {
		b.Fatalf("start platform: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- p.server.Serve(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.stop(ctx); err != nil {
			b.Errorf("stop platform: %v", err)
		}
		<-served
	})
	tok, err := os.ReadFile(filepath.Join(o.dir, "admin.token"))
	if err != nil {
		b.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(o.httpAddr)
	return &benchPlatform{p: p, port: port, token: strings.TrimSpace(string(tok)), client: loopbackClient(port)}
}

func (s *benchPlatform) tenantURL(id string) string { return "http://" + id + ".localhost:" + s.port }

// createTenant creates tenant id through the platform API; with an admin
// it returns the admin's PocketBase token.
func (s *benchPlatform) createTenant(b *testing.B, id string, admin bool) string {
	b.Helper()
	body := fmt.Sprintf(`{"id":%q}`, id)
	if admin {
		body = fmt.Sprintf(`{"id":%q,"admin":{"email":"admin@%s.test","password":"password-%s"}}`, id, id, id)
	}
	benchMustCall(b, s.client, http.StatusCreated, "POST", "http://localhost:"+s.port+"/api/cp/tenants", body, "Authorization", "Bearer "+s.token)
	if !admin {
		return ""
	}
	out := benchMustCall(b, s.client, http.StatusOK, "POST", s.tenantURL(id)+"/api/collections/_superusers/auth-with-password",
		fmt.Sprintf(`{"identity":"admin@%s.test","password":"password-%s"}`, id, id))
	var auth struct{ Token string }
	if err := json.Unmarshal(out, &auth); err != nil || auth.Token == "" {
		b.Fatalf("auth: %s", out)
	}
	return auth.Token
}

// directServer is PocketBase served without pbe, the way apis.Serve builds
// it (router, CORS, admin UI, OnServe, net/http on loopback), with
// PocketBase's default settings and connection pools.
type directServer struct {
	url    string
	token  string
	client *http.Client
}

func startDirect(b *testing.B) *directServer {
	b.Helper()
	app := core.NewBaseApp(core.BaseAppConfig{DataDir: b.TempDir()})
	if err := app.Bootstrap(); err != nil {
		b.Fatal(err)
	}
	if err := app.RunAllMigrations(); err != nil {
		b.Fatal(err)
	}
	router, err := apis.NewRouter(app)
	if err != nil {
		b.Fatal(err)
	}
	router.Bind(apis.CORS(apis.CORSConfig{
		AllowOrigins: []string{"*"},
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodPost, http.MethodDelete},
	}))
	router.GET("/_/{path...}", apis.Static(ui.DistDirFS, false)).Bind(apis.Gzip())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{WriteTimeout: 5 * time.Minute, ReadTimeout: 5 * time.Minute, ReadHeaderTimeout: time.Minute}
	err = app.OnServe().Trigger(&core.ServeEvent{App: app, Router: router, Server: srv, Listener: ln}, func(e *core.ServeEvent) error {
		h, err := e.Router.BuildMux()
		e.Server.Handler = h
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	b.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		<-served
		_ = app.OnTerminate().Trigger(&core.TerminateEvent{App: app}, func(e *core.TerminateEvent) error {
			return e.App.ResetBootstrapState()
		})
	})

	superusers, err := app.FindCollectionByNameOrId(core.CollectionNameSuperusers)
	if err != nil {
		b.Fatal(err)
	}
	admin := core.NewRecord(superusers)
	admin.SetEmail("admin@direct.test")
	admin.SetPassword("password-direct")
	if err := app.Save(admin); err != nil {
		b.Fatal(err)
	}
	token, err := admin.NewAuthToken()
	if err != nil {
		b.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &directServer{url: "http://127.0.0.1:" + port, token: token, client: loopbackClient(port)}
}

// setupBenchCollections creates, through the API at base, the public "posts"
// collection with 20 records (listed) and an identical empty "notes"
// collection (written to), so the list does not grow with the creates.
func setupBenchCollections(b *testing.B, client *http.Client, base, token string) {
	b.Helper()
	for _, name := range []string{"posts", "notes"} {
		benchMustCall(b, client, http.StatusOK, "POST", base+"/api/collections", fmt.Sprintf(`{"name":%q,"type":"base",
			"listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
			"fields":[{"name":"title","type":"text"},{"name":"created","type":"autodate","onCreate":true}]}`, name),
			"Authorization", token)
	}
	for i := range 20 {
		benchMustCall(b, client, http.StatusOK, "POST", base+"/api/collections/posts/records", fmt.Sprintf(`{"title":"post number %d"}`, i))
	}
}

// runBenchLoad sends b.N requests made by newReq from benchClients concurrent
// keep-alive clients sharing client's transport, and reports requests per
// second and the latency percentiles. Every response must be 200.
func runBenchLoad(b *testing.B, client *http.Client, newReq func() (*http.Request, error)) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchClients + procs - 1) / procs)
	var (
		mu     sync.Mutex
		all    []time.Duration
		failed atomic.Int64
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			req, err := newReq()
			if err != nil {
				b.Error(err)
				return
			}
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s %s: got status %d", req.Method, req.URL, resp.StatusCode)
				}
			}
			local = append(local, time.Since(start))
			if err != nil && failed.Add(1) == 1 {
				b.Error(err)
			}
		}
		mu.Lock()
		all = append(all, local...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "req/s")
	reportDurations(b, all, "ms")
	b.ReportMetric(float64((benchClients+procs-1)/procs*procs), "clients")
}

// BenchmarkRecords is figure 2: a record list (20 records) and a record
// create through pbe all-in-one ({tenant}.localhost, gateway, tenant node)
// and through the same PocketBase served directly, each driven by 16
// concurrent keep-alive clients in this process. Both servers are started
// once per run of this function and measured one after the other (note
// that -count=N repeats each sub-benchmark N times in a row: to alternate
// the sides, run the whole benchmark several times). Compare req/s of
// server=pbe with server=direct.
func BenchmarkRecords(b *testing.B) {
	pbe := startBenchPlatform(b)
	const tenant = "bench"
	setupBenchCollections(b, pbe.client, pbe.tenantURL(tenant), pbe.createTenant(b, tenant, true))
	direct := startDirect(b)
	setupBenchCollections(b, direct.client, direct.url, direct.token)

	servers := []struct {
		name   string
		base   string
		client *http.Client
	}{{"direct", direct.url, direct.client}, {"pbe", pbe.tenantURL(tenant), pbe.client}}
	for _, op := range []string{"list", "create"} {
		for _, srv := range servers {
			b.Run("op="+op+"/server="+srv.name, func(b *testing.B) {
				var n atomic.Int64
				runBenchLoad(b, srv.client, func() (*http.Request, error) {
					if op == "list" {
						return http.NewRequest("GET", srv.base+"/api/collections/posts/records", nil)
					}
					req, err := http.NewRequest("POST", srv.base+"/api/collections/notes/records",
						strings.NewReader(fmt.Sprintf(`{"title":"note %d"}`, n.Add(1))))
					if err == nil {
						req.Header.Set("Content-Type", "application/json")
					}
					return req, err
				})
			})
		}
	}
}

// BenchmarkPlatform_CreateToFirstResponse is figure 1a end to end through
// the platform: POST /api/cp/tenants (a Raft commit) and then the tenant's
// first request, GET /api/health on {tenant}.localhost, which activates it.
// Each tenant is deleted (untimed) after its sample.
func BenchmarkPlatform_CreateToFirstResponse(b *testing.B) {
	s := startBenchPlatform(b)
	// The first app in a process pays one-off costs.
	s.createTenant(b, "warmup", false)
	benchMustCall(b, s.client, http.StatusOK, "GET", s.tenantURL("warmup")+"/api/health", "")

	var lat []time.Duration
	prev := ""
	for b.Loop() {
		b.StopTimer()
		if prev != "" {
			benchMustCall(b, s.client, http.StatusOK, "DELETE", "http://localhost:"+s.port+"/api/cp/tenants/"+prev, "", "Authorization", "Bearer "+s.token)
		}
		id := fmt.Sprintf("new-%d", len(lat))
		b.StartTimer()
		start := time.Now()
		s.createTenant(b, id, false)
		benchMustCall(b, s.client, http.StatusOK, "GET", s.tenantURL(id)+"/api/health", "")
		lat = append(lat, time.Since(start))
		prev = id
	}
	reportDurations(b, lat, "ms")
}
