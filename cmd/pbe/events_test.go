package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	ID, Type string
	Data     struct {
		Tenant, User, Node string
	}
}

// openEvents opens the event stream with token, resuming after lastID if
// given; events arrive on the channel until the test ends.
func openEvents(t *testing.T, s *testServer, token, lastID string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base()+"/api/cp/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	hc := loopbackClient(s.port)
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("event stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				e.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				e.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e.Data)
			case line == "" && e.ID != "":
				out <- e
				e = sseEvent{}
			}
		}
	}()
	return out
}

// nextEvent waits for the next event of type typ, skipping others.
func nextEvent(t *testing.T, ch <-chan sseEvent, typ string) sseEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.Type == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event", typ)
		}
	}
}

// events returns the events of types (comma-separated; node.* names a
// prefix) from the start of the log, read as one JSON page with the
// server's token.
func (s *testServer) events(types string) []cluster.Event {
	s.t.Helper()
	r := s.api("GET", "/api/cp/events?after=00000000000000000000-0000&types="+types, nil)
	mustStatus(s.t, r, http.StatusOK)
	var page struct{ Items []cluster.Event }
	r.json(s.t, &page)
	return page.Items
}

// waitEvent waits (bounded) until the log holds an event of typ that
// match accepts, and returns it.
func (s *testServer) waitEvent(typ string, match func(cluster.Event) bool) cluster.Event {
	s.t.Helper()
	var found cluster.Event
	var seen []cluster.Event
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen = s.events(typ)
		for _, e := range seen {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no matching %s event; the log's %s events: %+v", typ, typ, seen)
			return found
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEvents_StreamResumeAndScope(t *testing.T) {
	s, mail := startAccountsServer(t)
	stream := openEvents(t, s, s.token, "")
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": "first"}), http.StatusCreated)
	created := nextEvent(t, stream, "tenant.created")
	if created.Data.Tenant != "first" {
		t.Fatalf("event: %+v", created)
	}
	mustStatus(t, s.api("DELETE", "/api/cp/tenants/first", nil), http.StatusOK)
	deleted := nextEvent(t, stream, "tenant.deleted")

	// Resuming after the first event gives the second, not the first.
	resumed := openEvents(t, s, s.token, created.ID)
	if e := nextEvent(t, resumed, "tenant.deleted"); e.ID != deleted.ID {
		t.Fatalf("resumed at %s, want %s", e.ID, deleted.ID)
	}
	// The same as one JSON page.
	r := s.api("GET", "/api/cp/events?after="+created.ID+"&types=tenant.*", nil)
	mustStatus(t, r, http.StatusOK)
	var page struct {
		Items  []struct{ ID, Type, Tenant string }
		LastID string `json:"last_id"`
	}
	r.json(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != deleted.ID || page.LastID != deleted.ID {
		t.Fatalf("page: %s", r.body)
	}
	mustStatus(t, s.api("GET", "/api/cp/events?after=not-an-id", nil), http.StatusBadRequest)

	// Customers see their own account's and tenants' events only.
	alice := signup(t, s, mail, "alice@example.com", true)
	bob := signup(t, s, mail, "bob@example.com", true)
	bobStream := openEvents(t, s, bob.access, "")
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-app"}), http.StatusCreated)
	mustStatus(t, bob.api("POST", "/api/cp/tenants", map[string]string{"id": "bob-app"}), http.StatusCreated)
	if e := nextEvent(t, bobStream, "tenant.created"); e.Data.Tenant != "bob-app" {
		t.Fatalf("bob's stream got %+v", e)
	}
	r = bob.api("GET", "/api/cp/events?after=00000000000000000000-0000", nil)
	mustStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.body), "alice") || strings.Contains(string(r.body), `"first"`) || !strings.Contains(string(r.body), "bob-app") {
		t.Fatalf("bob's events: %s", r.body)
	}
}

// TestEvents_NodeActivity: what nodes report in their heartbeats becomes
// events too: a tenant activated on a node, then evicted when idle.
func TestEvents_NodeActivity(t *testing.T) {
	// Long enough to be seen by a heartbeat (one a second).
	s := startServer(t, t.TempDir(), func(o *serveOptions) { o.idleTimeout = 3 * time.Second })
	stream := openEvents(t, s, s.token, "")
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": "busy"}), http.StatusCreated)
	mustStatus(t, s.do("GET", s.tenantURL("busy", "/api/health"), nil), http.StatusOK)
	if e := nextEvent(t, stream, "tenant.activated"); e.Data.Tenant != "busy" || e.Data.Node != "local" {
		t.Fatalf("activated: %+v", e)
	}
	if e := nextEvent(t, stream, "tenant.evicted"); e.Data.Tenant != "busy" {
		t.Fatalf("deactivated: %+v", e)
	}
}

// TestEvents_QuotaExceeded: a tenant refused for its request quota is an
// event (one an hour per quota).
func TestEvents_QuotaExceeded(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": "greedy"}), http.StatusCreated)
	mustStatus(t, s.do("GET", s.tenantURL("greedy", "/api/health"), nil), http.StatusOK)
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/greedy", map[string]any{"quota": map[string]any{"requests_per_day": 2}}), http.StatusOK)
	time.Sleep(1500 * time.Millisecond) // a heartbeat reports the tenant first
	refused := 0
	for range 5 {
		if s.do("GET", s.tenantURL("greedy", "/api/health"), nil).status == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the request quota refused nothing")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.api("GET", "/api/cp/events?types=quota.exceeded&after=00000000000000000000-0000", nil)
		mustStatus(t, r, http.StatusOK)
		if strings.Contains(string(r.body), `"greedy"`) && strings.Contains(string(r.body), `"requests_per_day"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no quota.exceeded event: %s", r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
