package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

// shopWithHistory creates tenant "shop" in sync durability (a write is in
// the object store when it returns) with create, an operator's or a
// customer's API, writes posts A and B, then C after the moment it
// returns.
func shopWithHistory(t *testing.T, s *testServer, create func(method, path string, body any) response) time.Time {
	t.Helper()
	mustStatus(t, create("POST", "/api/cp/tenants", map[string]any{"id": "shop", "durability": "sync",
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	s.createPostsCollection("shop", s.superuserToken("shop"))
	s.createPost("shop", "A")
	s.createPost("shop", "B")
	time.Sleep(50 * time.Millisecond)
	point := time.Now().UTC()
	time.Sleep(50 * time.Millisecond)
	s.createPost("shop", "C")
	return point
}

func TestPITR_InPlaceUndoAndFork(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	point := shopWithHistory(t, s, alice.api)

	// The window covers the point.
	r := alice.api("GET", "/api/cp/tenants/shop/restore-points", nil)
	mustStatus(t, r, http.StatusOK)
	var rp struct {
		From, To *time.Time
		Epochs   []struct{ Epoch uint64 }
	}
	r.json(t, &rp)
	if rp.From == nil || rp.From.After(point) || rp.To == nil || len(rp.Epochs) == 0 {
		t.Fatalf("restore points: %s", r.body)
	}

	// Bad input changes nothing.
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{}), http.StatusBadRequest)
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": time.Now().Add(time.Hour)}), http.StatusBadRequest)
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": rp.From.Add(-time.Hour)}), http.StatusBadRequest)
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": point, "fork": "Bad_Id"}), http.StatusBadRequest)
	if got := strings.Join(s.postTitles("shop"), ","); got != "A,B,C" {
		t.Fatalf("after refused restores: %s", got)
	}

	// A fork at the point: a new tenant with A and B; the source keeps C.
	r = alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": point, "fork": "shop-copy"})
	mustStatus(t, r, http.StatusCreated)
	if got := strings.Join(s.postTitles("shop-copy"), ","); got != "A,B" {
		t.Fatalf("fork: %s", got)
	}
	if got := strings.Join(s.postTitles("shop"), ","); got != "A,B,C" {
		t.Fatalf("source after the fork: %s", got)
	}
	s.createPost("shop-copy", "fork only")

	// In place: back to A and B.
	r = alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": point})
	mustStatus(t, r, http.StatusOK)
	var res struct {
		Undo struct{ Timestamp time.Time }
	}
	r.json(t, &res)
	if got := strings.Join(s.postTitles("shop"), ","); got != "A,B" {
		t.Fatalf("after restoring in place: %s", got)
	}
	restored := s.waitEvent("tenant.point_in_time_restored", func(e cluster.Event) bool { return e.Tenant == "shop" })
	if at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(restored.Data["at"])); !at.Equal(point) || restored.User != alice.id {
		t.Errorf("point-in-time restore event: %+v, want tenant shop of %s at %v", restored, alice.id, point)
	}
	// Writes after the restore stick...
	s.createPost("shop", "D")

	// ...and the restore can be undone: back to A, B, C.
	r = alice.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": res.Undo.Timestamp})
	mustStatus(t, r, http.StatusOK)
	if got := strings.Join(s.postTitles("shop"), ","); got != "A,B,C" {
		t.Fatalf("after undoing the restore: %s", got)
	}
	if got := strings.Join(s.postTitles("shop-copy"), ","); got != "A,B,fork only" {
		t.Fatalf("the fork changed: %s", got)
	}
	// Another customer cannot see or restore it.
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("GET", "/api/cp/tenants/shop/restore-points", nil), http.StatusNotFound)
	mustStatus(t, bob.api("POST", "/api/cp/tenants/shop/pitr", map[string]any{"timestamp": point}), http.StatusNotFound)
}
