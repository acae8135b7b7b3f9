package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
)

// metricsSecret is the cluster secret of the metrics tests' platform.
const metricsSecret = "metrics-test-cluster-secret"

// scrapeMetrics reads /metrics from url with the given headers.
func (s *testServer) scrapeMetrics(t *testing.T, url string, hdr ...string) string {
	t.Helper()
	r := s.do("GET", url, nil, hdr...)
	mustStatus(t, r, http.StatusOK)
	return string(r.body)
}

// families returns the metric family names of a scrape (from # TYPE).
func families(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

// dashboardMetrics returns the metric names used by the Grafana
// dashboard's query expressions.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana/pbe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(exprs) == 0 {
		t.Fatal("dashboard has no query expressions")
	}
	name := regexp.MustCompile(`\b(?:pbe|process)_[a-z_]+`)
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			seen[n] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// openRealtime opens a realtime (SSE) stream to tenant id and waits for
// its connect event; the returned function closes it.
func openRealtime(t *testing.T, s *testServer, id string) (disconnect func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.tenantURL(id, "/api/realtime"), nil)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("realtime: got status %d, want 200", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("realtime connect: %v", err)
		}
		if strings.HasPrefix(line, "event:") && strings.Contains(line, "PB_CONNECT") {
			break
		}
	}
	return func() {
		cancel()
		resp.Body.Close()
	}
}

// missingFrom returns the names not exported in a scrape; a histogram's
// _bucket, _sum and _count series (a summary's _sum and _count) count as
// its family.
func missingFrom(text string, names []string) []string {
	fams := families(text)
	var missing []string
	for _, n := range names {
		if _, ok := fams[n]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && (fams[base] == "histogram" || fams[base] == "summary" && suffix != "_bucket") {
				found = true
			}
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return missing
}

func TestMetrics_AllInOne(t *testing.T) {
	mail := startAccountsMail(t)
	s := startServer(t, t.TempDir(), func(o *serveOptions) {
		o.smtp = mail.URL()
		o.clusterSecret = metricsSecret
		o.metricsAddr = "127.0.0.1:0"
	})
	tok := s.createTenant("acme")
	s.createPostsCollection("acme", tok)
	s.createPost("acme", "one")
	mustStatus(t, s.do("GET", s.tenantURL("acme", "/api/collections/nope/records"), nil), http.StatusNotFound)
	secret := []string{"Authorization", "Bearer " + metricsSecret}

	t.Run("tenant requests counted by status class", func(t *testing.T) {
		text := s.scrapeMetrics(t, s.base()+"/metrics", secret...)
		for _, want := range []string{
			`pbe_tenant_requests_total{code="4xx",tenant="acme"} 1`,
			`pbe_tenant_requests_total{code="5xx",tenant="acme"} 0`,
			`pbe_tenant_errors_total{tenant="acme"} 0`,
			`pbe_registry_tenants{state="active"} 1`,
			`pbe_node_activations_total{kind="new"} 1`,
			`pbe_tenant_activations_total{tenant="acme"} 1`,
			`pbe_tenant_evictions_total{tenant="acme"} 0`,
			`pbe_raft_is_leader 1`,
			`pbe_tenant_hook_runs_total{tenant="acme"} 0`,
			`pbe_tenant_hook_runtimes_recycled_total{tenant="acme"} 0`,
		} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("scrape lacks %q", want)
			}
		}
		if !strings.Contains(text, `pbe_gateway_requests_total{code="4xx"}`) {
			t.Error("scrape lacks the gateway's 4xx requests")
		}
		if v, ok := seriesValue(text, `pbe_tenant_activation_seconds{kind="new",tenant="acme"} `); !ok || v <= 0 {
			t.Errorf("the tenant's activation: %v (exported: %v), want its duration", v, ok)
		}
	})

	t.Run("realtime connections", func(t *testing.T) {
		series := `pbe_tenant_realtime_connections{tenant="acme"} `
		if v, ok := seriesValue(s.scrapeMetrics(t, s.base()+"/metrics", secret...), series); !ok || v != 0 {
			t.Fatalf("before connecting: %s got %v (exported: %v), want 0", series, v, ok)
		}
		disconnect := openRealtime(t, s, "acme")
		if v, _ := seriesValue(s.scrapeMetrics(t, s.base()+"/metrics", secret...), series); v != 1 {
			t.Fatalf("with one stream open: %s got %v, want 1", series, v)
		}
		disconnect()
		waitFor(t, "the closed stream to be uncounted", func() bool {
			v, _ := seriesValue(s.scrapeMetrics(t, s.base()+"/metrics", secret...), series)
			return v == 0
		})
	})

	t.Run("last replicated time follows a write", func(t *testing.T) {
		series := `pbe_tenant_last_replicated_timestamp_seconds{tenant="acme"} `
		before := float64(time.Now().UnixNano()) / 1e9
		s.createPost("acme", "two")
		var v float64
		waitFor(t, "a sync after the write", func() bool {
			v, _ = seriesValue(s.scrapeMetrics(t, s.base()+"/metrics", secret...), series)
			return v >= before
		})
		if now := float64(time.Now().UnixNano()) / 1e9; v > now {
			t.Fatalf("%s got %v, after now (%v)", series, v, now)
		}
	})

	t.Run("every metric of the dashboard is exported", func(t *testing.T) {
		names := dashboardMetrics(t)
		// The replication lag appears once a heartbeat has checked the
		// tenant's replica (every second); wait for it, bounded.
		var missing []string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			missing = missingFrom(s.scrapeMetrics(t, s.base()+"/metrics", secret...), names)
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(missing) > 0 {
			t.Fatalf("dashboard uses metrics the platform does not export: %v", missing)
		}
	})

	t.Run("access", func(t *testing.T) {
		c := signup(t, s, mail, "carol@example.com", true)
		metricsURL := s.base() + "/metrics"
		for _, tc := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"no credentials", nil, http.StatusUnauthorized},
			{"wrong token", []string{"Authorization", "Bearer not-a-token"}, http.StatusUnauthorized},
			{"wrong operator-shaped token", []string{"Authorization", "Bearer pbe_0000000000000000000000000000"}, http.StatusUnauthorized},
			{"secret in another scheme", []string{"Authorization", "Basic " + metricsSecret}, http.StatusUnauthorized},
			{"customer token", []string{"Authorization", "Bearer " + c.access}, http.StatusForbidden},
			{"tenant superuser token", []string{"Authorization", "Bearer " + tok}, http.StatusUnauthorized},
			{"cluster secret", secret, http.StatusOK},
			{"operator token", []string{"Authorization", "Bearer " + s.token}, http.StatusOK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do("GET", metricsURL, nil, tc.hdr...)
				if r.status != tc.want {
					t.Fatalf("got status %d, want %d; body: %.200s", r.status, tc.want, r.body)
				}
				if isMetrics := strings.Contains(string(r.body), "# TYPE pbe_"); isMetrics != (tc.want == http.StatusOK) {
					t.Fatalf("metrics in the body: %v, want %v", isMetrics, tc.want == http.StatusOK)
				}
			})
		}
		t.Run("profiles are guarded like metrics", func(t *testing.T) {
			profiles := s.base() + "/debug/pprof/heap?debug=1"
			mustStatus(t, s.do("GET", profiles, nil), http.StatusUnauthorized)
			mustStatus(t, s.do("GET", profiles, nil, "Authorization", "Bearer "+c.access), http.StatusForbidden)
			r := s.do("GET", profiles, nil, "Authorization", "Bearer "+s.token)
			mustStatus(t, r, http.StatusOK)
			if !strings.Contains(string(r.body), "heap profile:") {
				t.Fatalf("no heap profile in the body: %.200s", r.body)
			}
		})
		t.Run("metrics-addr listener needs no credentials", func(t *testing.T) {
			// Not s.do: its client dials the main listener whatever the URL.
			resp, err := http.Get("http://" + s.p.metricsListener.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("metrics listener: got status %d, want 200", resp.StatusCode)
			}
			text := string(body)
			if !strings.Contains(text, "process_resident_memory_bytes") || !strings.Contains(text, "pbe_node_active_tenants") {
				t.Fatalf("metrics listener: got %.300s", text)
			}
		})
		t.Run("a tenant's /metrics stays the tenant's", func(t *testing.T) {
			r := s.do("GET", s.tenantURL("acme", "/metrics"), nil, secret...)
			if strings.Contains(string(r.body), "# TYPE pbe_") {
				t.Fatal("a tenant host served the platform's metrics")
			}
		})
	})
}

// TestMetrics_ControlPlaneSnapshotAndBadger forces a Raft snapshot on a
// control plane and reads its duration, its Raft term, the Badger size and
// the value-log GC series from /metrics.
func TestMetrics_ControlPlaneSnapshotAndBadger(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	operator := []string{"Authorization", "Bearer " + s.token}
	text := s.scrapeMetrics(t, s.base()+"/metrics", operator...)
	if v, ok := seriesValue(text, "pbe_raft_snapshot_duration_seconds_count "); !ok || v != 0 {
		t.Fatalf("before a snapshot: pbe_raft_snapshot_duration_seconds_count got %v (exported: %v), want 0", v, ok)
	}
	mustStatus(t, s.do("POST", s.base()+"/api/cp/raft/snapshot", nil, operator...), http.StatusOK)
	text = s.scrapeMetrics(t, s.base()+"/metrics", operator...)
	for _, tc := range []struct {
		series string
		min    float64 // the least value wanted
		above0 bool    // the value must also be above 0
	}{
		{"pbe_raft_term ", 1, false}, // an elected leader's term
		{"pbe_raft_snapshot_duration_seconds_count ", 1, false},
		{"pbe_raft_snapshot_duration_seconds_sum ", 0, true},
		{"pbe_raft_last_snapshot_duration_seconds ", 0, true},
		{`pbe_badger_size_bytes{part="lsm"} `, 0, false},
		{`pbe_badger_size_bytes{part="vlog"} `, 0, false},
		{"pbe_badger_vlog_gc_duration_seconds_count ", 0, false},
		{"pbe_badger_vlog_gc_rewrites_total ", 0, false},
	} {
		v, ok := seriesValue(text, tc.series)
		switch {
		case !ok:
			t.Errorf("/metrics lacks %s", tc.series)
		case v < tc.min || tc.above0 && v <= 0:
			t.Errorf("%s: got %v, want at least %v (above 0: %v)", tc.series, v, tc.min, tc.above0)
		}
	}
	if got := families(text)["pbe_raft_snapshot_duration_seconds"]; got != "summary" {
		t.Errorf("pbe_raft_snapshot_duration_seconds is a %q, want a summary", got)
	}
}

// TestMetrics_NodeAndGatewayGuard is the guard of a tenant node's or
// gateway's metrics and profiles: only the cluster secret opens them (no
// control plane to check operator tokens with), and a request naming a
// tenant is the tenant's.
func TestMetrics_NodeAndGatewayGuard(t *testing.T) {
	reg := metrics.NewRegistry()
	node := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := withOps(node, guardedOps(reg, metricsSecret, nil))
	for _, path := range []struct{ path, body string }{
		{"/metrics", "process_open_fds"},
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
	} {
		for _, tc := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"no credentials", nil, http.StatusUnauthorized},
			{"operator-shaped token", []string{"Authorization", "Bearer pbe_0000000000000000000000000000"}, http.StatusUnauthorized},
			{"secret as the node header only", []string{cluster.HeaderSecret, metricsSecret}, http.StatusUnauthorized},
			{"cluster secret", []string{"Authorization", "Bearer " + metricsSecret}, http.StatusOK},
			{"a tenant's request", []string{cluster.HeaderTenant, "acme", "Authorization", "Bearer " + metricsSecret}, http.StatusTeapot},
		} {
			t.Run(path.path+" "+tc.name, func(t *testing.T) {
				req := httptest.NewRequest("GET", path.path, nil)
				for i := 0; i+1 < len(tc.hdr); i += 2 {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != tc.want {
					t.Fatalf("got status %d, want %d", w.Code, tc.want)
				}
				if tc.want == http.StatusOK && !strings.Contains(w.Body.String(), path.body) {
					t.Fatalf("no %q in the body: %.200s", path.body, w.Body)
				}
			})
		}
	}
	t.Run("the command line is not served", func(t *testing.T) {
		req := httptest.NewRequest("GET", "/debug/pprof/cmdline", nil)
		req.Header.Set("Authorization", "Bearer "+metricsSecret)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "serve") && strings.Contains(w.Body.String(), "--") {
			t.Fatalf("got %d %.200s, want 404", w.Code, w.Body)
		}
	})
}
