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

func TestMinFreeDisk(t *testing.T) {
	dir := t.TempDir()
	var free uint64
	var measured string
	check := MinFreeDisk(dir, 1<<30, func(path string) (uint64, error) { measured = path; return free, nil })
	free = 2 << 30
	if err := check(context.Background()); err != nil || measured != dir {
		t.Fatalf("2 GiB free of a 1 GiB minimum: got %v (measured %q), want nil (measured %q)", err, measured, dir)
	}
	free = 100 << 20
	if err := check(context.Background()); err == nil || err.Error() != "free disk 100 MiB is below the minimum 1024 MiB" {
		t.Fatalf("100 MiB free: got %v, want the low-disk error", err)
	}
	broken := MinFreeDisk(dir, 1, func(string) (uint64, error) { return 0, errors.New("statfs failed") })
	if err := broken(context.Background()); err == nil {
		t.Fatal("a failed measurement passed")
	}
	t.Run("statfs", func(t *testing.T) {
		if err := MinFreeDisk(dir, 1, nil)(context.Background()); err != nil {
			t.Fatalf("a real volume with 1 byte free wanted: %v", err)
		}
		if err := MinFreeDisk(dir, 1<<62, nil)(context.Background()); err == nil {
			t.Fatal("a real volume has 4 EiB free")
		}
		if err := MinFreeDisk(dir+"/missing", 1, nil)(context.Background()); err == nil {
			t.Fatal("a missing directory was measured")
		}
	})
}
