package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFleet_BackupsOnS3 runs point-in-time restore, export and import,
// and archiving on a fleet of processes (control plane, two tenant nodes,
// gateway) on a real S3-compatible store, through the gateway.
func TestFleet_BackupsOnS3(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "sync") // each write is in the object store when it returns
	g := f.gateway()
	g.createPost("acme", "A")
	f.waitReplicated("acme")
	time.Sleep(100 * time.Millisecond)
	point := time.Now().UTC()
	time.Sleep(100 * time.Millisecond)
	g.createPost("acme", "B")
	f.waitReplicated("acme")

	// Point-in-time restore in place.
	r := g.api("POST", "/api/cp/tenants/acme/pitr", map[string]any{"timestamp": point})
	mustStatus(t, r, http.StatusOK)
	if got := strings.Join(g.postTitles("acme"), ","); got != "A" {
		t.Fatalf("after the restore: %q", got)
	}

	// Export, import as another tenant.
	r = g.api("GET", "/api/cp/tenants/acme/export", nil)
	mustStatus(t, r, http.StatusOK)
	mustStatus(t, g.do("POST", g.base()+"/api/cp/tenants/import?id=acme-copy", r.body,
		"Authorization", "Bearer "+testAdminToken, "Content-Type", "application/gzip"), http.StatusCreated)
	if got := strings.Join(g.postTitles("acme-copy"), ","); got != "A" {
		t.Fatalf("imported: %q", got)
	}

	// Archive: the replicas leave S3; the next request brings it back.
	g.createPost("acme", "C")
	f.waitReplicated("acme")
	mustStatus(t, g.api("POST", "/api/cp/tenants/acme/archive", nil), http.StatusOK)
	if keys := f.objectKeys("tenants/acme/litestream/"); len(keys) != 0 {
		t.Fatalf("replica history left after archiving: %d objects", len(keys))
	}
	if got := strings.Join(g.postTitles("acme"), ","); got != "A,C" {
		t.Fatalf("after archiving: %q", got)
	}
}
