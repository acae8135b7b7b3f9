package main

import (
	"net/http"
	"testing"
	"time"
)

// TestTenantMetrics_OwnerSeesTheLastMinute: a tenant's requests, latency
// and storage reach its owner through the control plane (from the node's
// heartbeats), and nobody else's.
func TestTenantMetrics_OwnerSeesTheLastMinute(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "shop",
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	s.createPostsCollection("shop", s.superuserToken("shop"))
	// A first report, then traffic: 30 requests.
	time.Sleep(1500 * time.Millisecond)
	for range 30 {
		mustStatus(t, s.do("GET", s.tenantURL("shop", "/api/collections/posts/records"), nil), http.StatusOK)
	}
	var u struct {
		Active            bool
		Requests          uint64
		RequestsPerSecond float64  `json:"requests_per_second"`
		P95               *float64 `json:"p95_seconds"`
		DBBytes           int64    `json:"db_bytes"`
		StorageBytes      int64    `json:"storage_bytes"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := alice.api("GET", "/api/cp/tenants/shop/metrics", nil)
		mustStatus(t, r, http.StatusOK)
		r.json(t, &u)
		if u.Requests >= 30 {
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
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("GET", "/api/cp/tenants/shop/metrics", nil), http.StatusNotFound)
}
