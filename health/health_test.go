package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestChecker_Ready(t *testing.T) {
	c := New()
	c.Add("ok", func(context.Context) error { return nil })
	w := httptest.NewRecorder()
	c.ReadyHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("got %d", w.Code)
	}

	c.Add("broken", func(context.Context) error { return errors.New("disk gone") })
	w = httptest.NewRecorder()
	c.ReadyHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d, want 503 with Retry-After", w.Code)
	}
	var rep Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "fail" || rep.Checks["ok"].Status != "ok" || rep.Checks["broken"].Error != "disk gone" {
		t.Fatalf("report: %+v", rep)
	}
}

func TestChecker_CheckTimesOut(t *testing.T) {
	c := New()
	c.Add("hangs", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rep := c.Run(ctx); rep.Status != "fail" {
		t.Fatalf("got %+v", rep)
	}
}
