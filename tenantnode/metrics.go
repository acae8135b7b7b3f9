package tenantnode

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbe/pbe/metrics"
)

// MetricsCollector returns the node's metrics for a registry: what
// requests, activations and evictions recorded, and, read at scrape time
// from the active instances (no I/O), their storage, replication and quota
// headroom. A scrape takes the manager's mutex once, to list the
// instances.
func (m *Manager) MetricsCollector() prometheus.Collector { return nodeCollector{m} }

type nodeCollector struct{ m *Manager }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.m.metrics.Describe(ch)
	ch <- metrics.DescTenantDBBytes
	ch <- metrics.DescTenantFileBytes
	ch <- metrics.DescTenantReplicationLag
	ch <- metrics.DescTenantLastReplicated
	ch <- metrics.DescTenantStorageHeadroom
	ch <- metrics.DescTenantRequestHeadroom
	ch <- metrics.DescTenantGrowth
	ch <- metrics.DescTenantPeakRequests
	ch <- metrics.DescTenantHookRuns
	ch <- metrics.DescTenantHookErrors
	ch <- metrics.DescTenantHookCPU
	ch <- metrics.DescTenantHookRuntimes
	ch <- metrics.DescTenantHookRecycled
	ch <- metrics.DescNodeActiveTenants
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.metrics.Collect(ch)
	c.m.mu.Lock()
	entries := c.m.active.Values()
	c.m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(metrics.DescNodeActiveTenants, prometheus.GaugeValue, float64(len(entries)))
	now := time.Now()
	for _, e := range entries {
		if !e.isReady() || e.inst == nil {
			continue
		}
		collectInstance(ch, e.inst, now)
	}
}

// collectInstance sends the scrape-time gauges of one active tenant.
func collectInstance(ch chan<- prometheus.Metric, inst *instance, now time.Time) {
	id := inst.tenant.ID
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, id)
	}
	q := inst.quota
	used := q.dbBytes.Load() + q.fileBytes.Load()
	gauge(metrics.DescTenantDBBytes, float64(q.dbBytes.Load()))
	gauge(metrics.DescTenantFileBytes, float64(q.fileBytes.Load()))
	gauge(metrics.DescTenantGrowth, q.growthRate(now))
	if mt := inst.metrics; mt != nil {
		minute, hour := mt.PeakRequests(now)
		ch <- prometheus.MustNewConstMetric(metrics.DescTenantPeakRequests, prometheus.GaugeValue, float64(minute), id, metrics.PeakWindowMinute)
		ch <- prometheus.MustNewConstMetric(metrics.DescTenantPeakRequests, prometheus.GaugeValue, float64(hour), id, metrics.PeakWindowHour)
	}
	if inst.hooks != nil {
		ht := inst.hooks.Totals()
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, id)
		}
		counter(metrics.DescTenantHookRuns, float64(ht.Runs))
		counter(metrics.DescTenantHookErrors, float64(ht.Errors))
		counter(metrics.DescTenantHookCPU, ht.CPU.Seconds())
		gauge(metrics.DescTenantHookRuntimes, float64(ht.Runtimes))
		counter(metrics.DescTenantHookRecycled, float64(ht.Recycled))
	}
	if limit := q.storageLimit.Load(); limit > 0 {
		gauge(metrics.DescTenantStorageHeadroom, float64(limit-used))
	}
	if limit := q.requestLimit.Load(); limit > 0 {
		n, _ := q.peekRequests(now.Unix())
		gauge(metrics.DescTenantRequestHeadroom, float64(max(limit-n, 0)))
	}
	if at := inst.inSyncAt.Load(); at > 0 {
		gauge(metrics.DescTenantReplicationLag, max(now.Sub(time.Unix(0, at)).Seconds(), 0))
	}
	if len(inst.dbs) > 0 {
		if t := inst.dbs[0].LastSuccessfulSyncAt(); !t.IsZero() {
			gauge(metrics.DescTenantLastReplicated, float64(t.UnixNano())/1e9)
		}
	}
}

// activationKind is the kind label of an activation from o.
func activationKind(o origin) string {
	switch o {
	case fromStore:
		return metrics.ActivationCold
	case fresh:
		return metrics.ActivationNew
	default:
		return metrics.ActivationWarm
	}
}

// tenantWriter remembers the status of a tenant response for metrics and,
// once filter is set (for the tenant's own handler), strips the platform's
// internal headers from it: a hook setting X-Pbe-Error could otherwise make
// gateways hold its requests.
type tenantWriter struct {
	http.ResponseWriter
	status int
	filter bool
}

func (w *tenantWriter) strip() {
	if !w.filter {
		return
	}
	h := w.ResponseWriter.Header()
	for k := range h {
		if strings.HasPrefix(k, "X-Pbe-") {
			delete(h, k)
		}
	}
}

func (w *tenantWriter) WriteHeader(code int) {
	if w.status == 0 && code >= http.StatusOK {
		w.status = code
	}
	w.strip()
	w.ResponseWriter.WriteHeader(code)
}

func (w *tenantWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.strip()
	return w.ResponseWriter.Write(b)
}

// Flush lets realtime streams through.
func (w *tenantWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *tenantWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusOr returns the status written, or def when nothing was.
func (w *tenantWriter) statusOr(def int) int {
	if w.status == 0 {
		return def
	}
	return w.status
}
