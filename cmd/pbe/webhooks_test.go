package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbe/pbe/controlplane"
)

// receiver is a real HTTP server that takes webhook deliveries, checks
// their signatures, and fails the first failFirst of them.
type receiver struct {
	t         *testing.T
	secret    string
	mu        sync.Mutex
	failFirst int
	calls     int
	got       []string // event ids, in order, of accepted deliveries
	types     []string
	badSig    int
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.calls++
	sig := r.Header.Get("X-Pbe-Signature")
	ts, v1, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",v1=")
	// The receiver checks as the docs tell one to: HMAC-SHA256 of
	// "{t}.{body}" with the secret, hex.
	m := hmac.New(sha256.New, []byte(rv.secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal([]byte(v1), []byte(hex.EncodeToString(m.Sum(nil)))) {
		rv.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rv.calls <= rv.failFirst {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	var e struct{ ID, Type string }
	_ = json.Unmarshal(body, &e)
	if e.ID != r.Header.Get("X-Pbe-Event-Id") || e.Type != r.Header.Get("X-Pbe-Event") {
		rv.t.Errorf("headers %q %q do not match the body %s", r.Header.Get("X-Pbe-Event-Id"), r.Header.Get("X-Pbe-Event"), body)
	}
	rv.got = append(rv.got, e.ID)
	rv.types = append(rv.types, e.Type)
}

func (rv *receiver) waitFor(n int) []string {
	rv.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		rv.mu.Lock()
		if len(rv.got) >= n {
			types := append([]string(nil), rv.types...)
			rv.mu.Unlock()
			return types
		}
		rv.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	rv.t.Fatalf("got %d deliveries, want %d", len(rv.got), n)
	return nil
}

func TestWebhooks_SignedOrderedRetriedAndLogged(t *testing.T) {
	s, _ := startAccountsServer(t)
	rv := &receiver{t: t, secret: "a-webhook-secret-of-some-length", failFirst: 2}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	// Bad input changes nothing.
	mustStatus(t, s.api("POST", "/api/cp/webhooks", map[string]any{"url": "ftp://example.com"}), http.StatusBadRequest)
	mustStatus(t, s.api("POST", "/api/cp/webhooks", map[string]any{"url": srv.URL, "secret": "short"}), http.StatusBadRequest)

	r := s.api("POST", "/api/cp/webhooks", map[string]any{"url": srv.URL, "types": []string{"tenant.*"}, "secret": rv.secret})
	mustStatus(t, r, http.StatusCreated)
	var created struct {
		Webhook struct{ ID string }
		Secret  string
	}
	r.json(t, &created)
	if created.Secret != rv.secret {
		t.Fatalf("create answer: %s", r.body)
	}
	r = s.api("GET", "/api/cp/webhooks", nil)
	if strings.Contains(string(r.body), rv.secret) || !strings.Contains(string(r.body), created.Webhook.ID) {
		t.Fatalf("webhook list: %s", r.body)
	}

	for _, id := range []string{"hook-one", "hook-two"} {
		mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": id}), http.StatusCreated)
	}
	mustStatus(t, s.api("DELETE", "/api/cp/tenants/hook-one", nil), http.StatusOK)
	types := rv.waitFor(3)
	if strings.Join(types[:3], ",") != "tenant.created,tenant.created,tenant.deleted" {
		t.Fatalf("delivered %v", types)
	}
	rv.mu.Lock()
	if rv.badSig != 0 || rv.got[0] >= rv.got[1] || rv.got[1] >= rv.got[2] {
		t.Errorf("bad signatures %d, order %v", rv.badSig, rv.got)
	}
	rv.mu.Unlock()

	// The delivery log shows the two refused attempts and the retries.
	r = s.api("GET", "/api/cp/webhooks/"+created.Webhook.ID+"/deliveries", nil)
	mustStatus(t, r, http.StatusOK)
	var log struct {
		Items []controlplane.Delivery
	}
	r.json(t, &log)
	if len(log.Items) < 5 || log.Items[0].Status != http.StatusServiceUnavailable || log.Items[2].Attempt != 3 || log.Items[2].Status != http.StatusOK {
		t.Fatalf("delivery log: %s", r.body)
	}

	// Deleted: no more deliveries.
	mustStatus(t, s.api("DELETE", "/api/cp/webhooks/"+created.Webhook.ID, nil), http.StatusNoContent)
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": "hook-three"}), http.StatusCreated)
	time.Sleep(500 * time.Millisecond)
	rv.mu.Lock()
	n := len(rv.got)
	rv.mu.Unlock()
	if n != 3 {
		t.Fatalf("a deleted webhook got %d deliveries, want 3", n)
	}
	mustStatus(t, s.api("GET", "/api/cp/webhooks/"+created.Webhook.ID+"/deliveries", nil), http.StatusNotFound)
}
