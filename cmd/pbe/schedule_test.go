package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

func TestBackups_ScheduledWithRetention(t *testing.T) {
	mailSrv := startAccountsMail(t)
	s := startServer(t, t.TempDir(), func(o *serveOptions) {
		o.smtp = mailSrv.URL()
		o.backupTick = 100 * time.Millisecond
	})
	alice := signup(t, s, mailSrv, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "shop",
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	s.createPostsCollection("shop", s.superuserToken("shop"))
	s.createPost("shop", "A")

	// Customers may not back up more often than hourly; bad schedules are refused.
	mustStatus(t, alice.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 60, "keep": 2}}), http.StatusBadRequest)
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 1, "keep": 0}}), http.StatusBadRequest)
	mustStatus(t, alice.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 3600, "keep": 2}}), http.StatusOK)
	// The operator makes it every second.
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 1, "keep": 2}}), http.StatusOK)

	// Three backups are made; only the newest two are kept.
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := s.api("GET", "/api/cp/events?types=backup.*&after=00000000000000000000-0000", nil)
		mustStatus(t, r, http.StatusOK)
		if strings.Count(string(r.body), `"backup.created"`) >= 3 {
			break
		}
		if strings.Contains(string(r.body), "backup.failed") {
			t.Fatalf("a scheduled backup failed: %s", r.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled backups did not happen: %s", r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Stopping the schedule; then the newest two are what is left.
	mustStatus(t, alice.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 0}}), http.StatusOK)
	r := alice.api("GET", "/api/cp/tenants/shop", nil)
	if strings.Contains(string(r.body), `"backups"`) {
		t.Fatalf("schedule not removed: %s", r.body)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		r = alice.api("GET", "/api/cp/tenants/shop/backups", nil)
		mustStatus(t, r, http.StatusOK)
		n := strings.Count(string(r.body), `"auto-`)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d automatic backups kept, want 2: %s", n, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBackups_ScheduledFailureIsAnEvent: a scheduled backup that cannot be
// stored is a backup.failed event, and the tenant keeps serving.
func TestBackups_ScheduledFailureIsAnEvent(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, func(o *serveOptions) { o.backupTick = 100 * time.Millisecond })
	tok := s.createTenant("shop")
	s.createPostsCollection("shop", tok)
	s.createPost("shop", "A")
	// A file where the tenant's backups directory would be: the object
	// store cannot write under it.
	backups := filepath.Join(dir, "objects", "tenants", "shop", "backups")
	if err := os.MkdirAll(filepath.Dir(backups), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backups, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/shop", map[string]any{"backups": map[string]any{"every_seconds": 1, "keep": 2}}), http.StatusOK)
	e := s.waitEvent("backup.failed", func(e cluster.Event) bool { return e.Tenant == "shop" })
	if msg, _ := e.Data["error"].(string); msg == "" {
		t.Errorf("backup.failed event without its error: %+v", e)
	}
	s.createPost("shop", "B")
}
