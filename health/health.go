// Package health serves liveness (/healthz: the process answers) and
// readiness (/readyz: every named check passes) as JSON.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// CheckTimeout bounds each readiness check.
const CheckTimeout = 2 * time.Second

// CheckFunc reports nil when the thing it checks is ready.
type CheckFunc func(ctx context.Context) error

// Checker holds named readiness checks. Safe for concurrent use.
type Checker struct {
	mu     sync.RWMutex
	checks map[string]CheckFunc
}

// New returns an empty checker.
func New() *Checker { return &Checker{checks: map[string]CheckFunc{}} }

// Add registers (or replaces) the check called name.
func (c *Checker) Add(name string, fn CheckFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks[name] = fn
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Report is the body of /readyz.
type Report struct {
	Status string                 `json:"status"`
	Checks map[string]CheckResult `json:"checks"`
}

// Run runs every check concurrently and reports.
func (c *Checker) Run(ctx context.Context) Report {
	c.mu.RLock()
	names := make([]string, 0, len(c.checks))
	for n := range c.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	fns := make([]CheckFunc, len(names))
	for i, n := range names {
		fns[i] = c.checks[n]
	}
	c.mu.RUnlock()

	results := make([]CheckResult, len(names))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			results[i] = CheckResult{Status: "ok"}
			if err := fn(cctx); err != nil {
				results[i] = CheckResult{Status: "fail", Error: err.Error()}
			}
		}()
	}
	wg.Wait()
	rep := Report{Status: "ok", Checks: map[string]CheckResult{}}
	for i, n := range names {
		rep.Checks[n] = results[i]
		if results[i].Status != "ok" {
			rep.Status = "fail"
		}
	}
	return rep
}

// LiveHandler answers /healthz: 200 while the process serves HTTP.
func LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// ReadyHandler answers /readyz: 200 when every check passes, else 503.
func (c *Checker) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := c.Run(r.Context())
		status := http.StatusOK
		if rep.Status != "ok" {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, status, rep)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
