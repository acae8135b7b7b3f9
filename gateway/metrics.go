package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/pbe/pbe/metrics"
)

// MetricsCollector returns a collector of the proxy's circuit breakers,
// one gauge per tenant-node address, read when scraped.
func (p *Proxy) MetricsCollector() prometheus.Collector { return breakerCollector{p.breakers} }

type breakerCollector struct{ b *breakers }

func (c breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- metrics.DescBreakerState }

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	c.b.mu.Lock()
	states := make(map[string]gobreaker.State, len(c.b.m))
	for addr, cb := range c.b.m {
		states[addr] = cb.State()
	}
	c.b.mu.Unlock()
	for addr, st := range states {
		v := 0.0
		switch st {
		case gobreaker.StateHalfOpen:
			v = 1
		case gobreaker.StateOpen:
			v = 2
		}
		ch <- prometheus.MustNewConstMetric(metrics.DescBreakerState, prometheus.GaugeValue, v, addr)
	}
}

// isRealtime reports whether r opens a realtime (SSE) stream, whose
// duration is not a latency.
func isRealtime(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Path == "/api/realtime"
}

// statusWriter remembers the status of a response for metrics and traces.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= http.StatusOK {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets realtime streams through.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
