package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/tenantnode/hooks"
)

// TestTenantMetrics_OwnerSeesTheLastMinute: a tenant's requests, errors
// (5xx answers, not 4xx), latency, storage and replication reach its owner
// through the control plane (from the node's heartbeats), and nobody
// else's.
func TestTenantMetrics_OwnerSeesTheLastMinute(t *testing.T) {
	s, mail := startAccountsServer(t)
	start := time.Now()
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "shop",
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	s.createPostsCollection("shop", s.superuserToken("shop"))
	importFailingRoute(t, s, "shop")
	// A first report, then traffic: 30 answered, 3 refused (404), 2 failed (500).
	time.Sleep(1500 * time.Millisecond)
	for range 30 {
		mustStatus(t, s.do("GET", s.tenantURL("shop", "/api/collections/posts/records"), nil), http.StatusOK)
	}
	for range 3 {
		mustStatus(t, s.do("GET", s.tenantURL("shop", "/api/collections/nope/records"), nil), http.StatusNotFound)
	}
	for range 2 {
		mustStatus(t, s.do("GET", s.tenantURL("shop", "/api/fail"), nil), http.StatusInternalServerError)
	}
	var u struct {
		Active            bool
		Requests          uint64
		RequestsPerSecond float64 `json:"requests_per_second"`
		Errors            uint64
		ErrorsPerSecond   float64   `json:"errors_per_second"`
		P95               *float64  `json:"p95_seconds"`
		DBBytes           int64     `json:"db_bytes"`
		StorageBytes      int64     `json:"storage_bytes"`
		Lag               *float64  `json:"replication_lag_seconds"`
		LastReplicatedAt  time.Time `json:"last_replicated_at"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := alice.api("GET", "/api/cp/tenants/shop/metrics", nil)
		mustStatus(t, r, http.StatusOK)
		r.json(t, &u)
		if u.Requests >= 35 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tenant's requests never reached the control plane: %s", r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !u.Active || u.RequestsPerSecond <= 0 || u.P95 == nil || *u.P95 <= 0 || u.DBBytes <= 0 || u.StorageBytes < u.DBBytes {
		t.Fatalf("tenant metrics: %+v", u)
	}
	if u.Errors != 2 || u.ErrorsPerSecond <= 0 {
		t.Errorf("errors: got %d (%v/s), want the 2 answers of 500 and none of the 404s", u.Errors, u.ErrorsPerSecond)
	}
	// The tenant's replica is written from its creation on; its lag can
	// be no longer than the tenant has existed.
	if now := time.Now(); u.LastReplicatedAt.Before(start) || u.LastReplicatedAt.After(now) {
		t.Errorf("last replicated at %v, want between the test's start %v and now %v", u.LastReplicatedAt, start, now)
	}
	if u.Lag == nil || *u.Lag < 0 || *u.Lag > time.Since(start).Seconds() {
		t.Errorf("replication lag: got %v, want a number of seconds from 0 to the tenant's age", u.Lag)
	}
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("GET", "/api/cp/tenants/shop/metrics", nil), http.StatusNotFound)
}

// TestTenantMetrics_PeakAndGrowth: a burst of requests raises the tenant's
// peak requests per second, and inserted data its storage growth rate, in
// the owner's view (from the node's heartbeats) and on /metrics.
func TestTenantMetrics_PeakAndGrowth(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "shop",
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	s.createPostsCollection("shop", s.superuserToken("shop"))

	// The burst spans seconds distinct seconds, so one of them received at
	// least burst/seconds requests.
	const burst = 200
	first := time.Now()
	for range burst {
		mustStatus(t, s.do("GET", s.tenantURL("shop", "/api/collections/posts/records?perPage=1"), nil), http.StatusOK)
	}
	seconds := uint64(time.Now().Unix() - first.Unix() + 1)
	wantPeak := (burst + seconds - 1) / seconds
	// About 400 KB of new rows.
	title := strings.Repeat("x", 4000)
	for range 100 {
		s.createPost("shop", title)
	}

	var u struct {
		Growth float64 `json:"growth_bytes_per_hour"`
		Peak1m uint64  `json:"peak_requests_per_second_1m"`
		Peak1h uint64  `json:"peak_requests_per_second_1h"`
	}
	// The node measures storage every few seconds and reports every
	// second: wait for both, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := alice.api("GET", "/api/cp/tenants/shop/metrics", nil)
		mustStatus(t, r, http.StatusOK)
		r.json(t, &u)
		if u.Peak1m >= wantPeak && u.Growth > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got peak %d/s and growth %.0f B/h, want peak >= %d/s and growth > 0: %s", u.Peak1m, u.Growth, wantPeak, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d requests over %d s: peak %d/s in the last minute, %d/s in the hour; growth %.0f bytes/hour", burst, seconds, u.Peak1m, u.Peak1h, u.Growth)
	if u.Peak1h < u.Peak1m {
		t.Errorf("peak over the hour %d is below the minute's %d", u.Peak1h, u.Peak1m)
	}

	text := string(s.do("GET", s.base()+"/metrics", nil, "Authorization", "Bearer "+s.token).body)
	for _, series := range []string{
		`pbe_tenant_peak_requests_per_second{tenant="shop",window="1m"} `,
		`pbe_tenant_peak_requests_per_second{tenant="shop",window="1h"} `,
		`pbe_tenant_storage_growth_bytes_per_hour{tenant="shop"} `,
	} {
		v, ok := seriesValue(text, series)
		if !ok {
			t.Errorf("/metrics lacks %s", series)
			continue
		}
		if strings.Contains(series, "peak") && v < float64(wantPeak) || v <= 0 {
			t.Errorf("%s: got %v, want at least %d (peak) or above 0 (growth)", series, v, wantPeak)
		}
	}
}

// seriesValue returns the value of the series whose line starts with
// prefix (name, labels and a space).
func seriesValue(text, prefix string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// importFailingRoute gives tenant id a hook route, GET /api/fail, that
// answers 500.
func importFailingRoute(t *testing.T, s *testServer, id string) {
	t.Helper()
	o := hookClientOptions{email: "admin@" + id + ".test", password: "password-" + id}
	req := hooks.ImportRequest{Hooks: []hooks.ImportFile{{Name: "fail.pb.js",
		Code: `routerAdd("GET", "/api/fail", (e) => e.json(500, {"message": "failed on purpose"}))`}}}
	var st hooks.Status
	if err := o.call(s.tenantURL(id, ""), "POST", "/api/pbe/hooks/import", req, &st); err != nil {
		t.Fatalf("import hooks: %v", err)
	}
	if len(st.Hooks) != 1 || !st.Hooks[0].Loaded {
		t.Fatalf("the failing route did not load: %+v", st)
	}
}
