package metrics

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Activation kinds, the kind label of activation metrics.
const (
	ActivationCold = "cold" // restored from the object store
	ActivationWarm = "warm" // reopened from the node's local copy
	ActivationNew  = "new"  // a tenant that had never been written
)

// Windows of the peak request rate, the window label of
// pbe_tenant_peak_requests_per_second.
const (
	PeakWindowMinute = "1m"
	PeakWindowHour   = "1h"
)

// TenantNode is the metrics a tenant node records as it serves. It is a
// prometheus.Collector of the recorded series only; the gauges read at
// scrape time (storage, replication, active tenants) are the tenant
// node's own collector, which uses the Desc values below.
type TenantNode struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	inFlight    *prometheus.GaugeVec
	realtime    *prometheus.GaugeVec
	activations *prometheus.CounterVec
	activating  prometheus.Gauge
	activationT *prometheus.HistogramVec
	evictions   prometheus.Counter

	// Per tenant, exported while it is active: this node's activations and
	// evictions of it (history keeps the counts between activations) and
	// the kind and duration of the activation that opened it.
	tenantActivations *prometheus.CounterVec
	tenantEvictions   *prometheus.CounterVec
	tenantActivation  *prometheus.GaugeVec
	history           *lru.Cache[string, tenantHistory]
}

// tenantHistory is what a node remembers of a tenant between activations.
type tenantHistory struct{ activations, evictions uint64 }

// historySize bounds the tenants whose activation counts a node keeps.
const historySize = 100_000

// Descriptions of the tenant node's scrape-time gauges.
var (
	DescTenantDBBytes = prometheus.NewDesc("pbe_tenant_db_bytes",
		"Used size of the tenant's data.db and auxiliary.db, as last measured.", []string{"tenant"}, nil)
	DescTenantFileBytes = prometheus.NewDesc("pbe_tenant_file_bytes",
		"Size of the tenant's uploaded files.", []string{"tenant"}, nil)
	DescTenantReplicationLag = prometheus.NewDesc("pbe_tenant_replication_lag_seconds",
		"Seconds since the object store last held all of the tenant's commits (checked every heartbeat).", []string{"tenant"}, nil)
	DescTenantLastReplicated = prometheus.NewDesc("pbe_tenant_last_replicated_timestamp_seconds",
		"Unix time of the last successful sync of the tenant's data.db to the object store.", []string{"tenant"}, nil)
	DescTenantStorageHeadroom = prometheus.NewDesc("pbe_tenant_storage_quota_headroom_bytes",
		"Storage quota minus bytes used, for tenants with a storage quota (negative when over).", []string{"tenant"}, nil)
	DescTenantRequestHeadroom = prometheus.NewDesc("pbe_tenant_request_quota_headroom",
		"Requests left in the tenant's current quota window, for tenants with a request quota.", []string{"tenant"}, nil)
	DescTenantGrowth = prometheus.NewDesc("pbe_tenant_storage_growth_bytes_per_hour",
		"Growth of the tenant's database and file bytes over the last hour (or since activation, when shorter), from periodic measures.", []string{"tenant"}, nil)
	DescTenantPeakRequests = prometheus.NewDesc("pbe_tenant_peak_requests_per_second",
		"Most requests that arrived in one second over the window (1m or 1h), since the tenant was activated on the node.", []string{"tenant", "window"}, nil)
	DescTenantHookRuns = prometheus.NewDesc("pbe_tenant_hook_runs_total",
		"Runs of the tenant's JavaScript hooks since it was activated on the node.", []string{"tenant"}, nil)
	DescTenantHookErrors = prometheus.NewDesc("pbe_tenant_hook_errors_total",
		"Runs of the tenant's hooks that failed (threw, were stopped or refused) since it was activated on the node.", []string{"tenant"}, nil)
	DescTenantHookCPU = prometheus.NewDesc("pbe_tenant_hook_cpu_seconds_total",
		"CPU time the tenant's hook runs used since it was activated on the node.", []string{"tenant"}, nil)
	DescTenantHookRecycled = prometheus.NewDesc("pbe_tenant_hook_runtimes_recycled_total",
		"Runtimes of the tenant's hooks dropped for what their runs allocated (a run past --hook-memory, or 64 MiB in all) since it was activated on the node.", []string{"tenant"}, nil)
	DescTenantHookRuntimes = prometheus.NewDesc("pbe_tenant_hook_runtimes",
		"JavaScript runtimes the tenant's hooks have made (at most --hook-runtimes).", []string{"tenant"}, nil)
	DescNodeActiveTenants = prometheus.NewDesc("pbe_node_active_tenants",
		"Tenants active (or activating) on this node.", nil, nil)
)

// NewTenantNode returns the recorded metrics of one tenant node.
func NewTenantNode() *TenantNode {
	tenant := []string{"tenant"}
	history, _ := lru.New[string, tenantHistory](historySize)
	return &TenantNode{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_tenant_requests_total", Help: "Requests served for the tenant, by status class.",
		}, []string{"tenant", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pbe_tenant_request_duration_seconds", Help: "Time to serve a tenant request (realtime streams excluded).",
			Buckets: LatencyBuckets,
		}, tenant),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_tenant_errors_total", Help: "Tenant requests answered with a 5xx status.",
		}, tenant),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbe_tenant_requests_in_flight", Help: "Tenant requests being served, open realtime streams included.",
		}, tenant),
		realtime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbe_tenant_realtime_connections", Help: "Open realtime (SSE) connections of the tenant.",
		}, tenant),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_node_activations_total", Help: "Tenant activations on this node, by kind (cold, warm, new).",
		}, []string{"kind"}),
		activating: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbe_node_activations_in_progress", Help: "Tenant activations under way on this node.",
		}),
		activationT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pbe_node_activation_duration_seconds", Help: "Time to activate a tenant, by kind.",
			Buckets: ActivationBuckets,
		}, []string{"kind"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbe_node_evictions_total", Help: "Tenants stopped on this node (idle, capacity, release, removal).",
		}),
		tenantActivations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_tenant_activations_total", Help: "This node's activations of the tenant since the node started (shown while it is active).",
		}, tenant),
		tenantEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_tenant_evictions_total", Help: "This node's evictions of the tenant since the node started (shown while it is active).",
		}, tenant),
		tenantActivation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pbe_tenant_activation_seconds", Help: "How long the activation that opened the tenant took, by its kind (cold, warm, new).",
		}, []string{"tenant", "kind"}),
		history: history,
	}
}

func (n *TenantNode) collectors() []prometheus.Collector {
	return []prometheus.Collector{n.requests, n.latency, n.errors, n.inFlight, n.realtime,
		n.activations, n.activating, n.activationT, n.evictions, n.tenantActivations, n.tenantEvictions, n.tenantActivation}
}

// Describe implements prometheus.Collector.
func (n *TenantNode) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range n.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (n *TenantNode) Collect(ch chan<- prometheus.Metric) {
	for _, c := range n.collectors() {
		c.Collect(ch)
	}
}

// Tenant resolves tenant id's series once (at activation); recording on
// them afterwards takes no lock. DeleteTenant must follow when the tenant
// stops.
func (n *TenantNode) Tenant(id string) *Tenant {
	t := &Tenant{
		latency:  n.latency.WithLabelValues(id),
		errors:   n.errors.WithLabelValues(id),
		inFlight: n.inFlight.WithLabelValues(id),
		realtime: n.realtime.WithLabelValues(id),
		arrivals: new(PeakRate),
	}
	for i, c := range statusClasses {
		t.requests[i] = n.requests.WithLabelValues(id, c)
	}
	return t
}

// DeleteTenant drops every series of tenant id. A Tenant resolved before
// stays usable; what it records is no longer exported.
func (n *TenantNode) DeleteTenant(id string) {
	l := prometheus.Labels{"tenant": id}
	n.requests.DeletePartialMatch(l)
	n.latency.DeletePartialMatch(l)
	n.errors.DeletePartialMatch(l)
	n.inFlight.DeletePartialMatch(l)
	n.realtime.DeletePartialMatch(l)
	n.tenantActivations.DeletePartialMatch(l)
	n.tenantEvictions.DeletePartialMatch(l)
	n.tenantActivation.DeletePartialMatch(l)
}

// Activated records tenant id's activation of kind that took took, on the
// series it is exported with while active.
func (n *TenantNode) Activated(id, kind string, took time.Duration) {
	h, _ := n.history.Get(id)
	h.activations++
	n.history.Add(id, h)
	n.tenantActivations.WithLabelValues(id).Add(float64(h.activations))
	n.tenantEvictions.WithLabelValues(id).Add(float64(h.evictions))
	n.tenantActivation.WithLabelValues(id, kind).Set(took.Seconds())
}

// ActivationStarted counts an activation in; the returned func counts it
// out, recording its kind and duration when it succeeded (kind not empty).
func (n *TenantNode) ActivationStarted() func(kind string) {
	n.activating.Inc()
	start := time.Now()
	return func(kind string) {
		n.activating.Dec()
		if kind != "" {
			n.activations.WithLabelValues(kind).Inc()
			n.activationT.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		}
	}
}

// Evicted counts tenant id stopped on the node.
func (n *TenantNode) Evicted(id string) {
	n.evictions.Inc()
	h, _ := n.history.Get(id)
	h.evictions++
	n.history.Add(id, h)
}

// Tenant is one active tenant's pre-resolved series. Its methods are safe
// for concurrent use and take no lock (atomic updates only).
type Tenant struct {
	requests [len(statusClasses)]prometheus.Counter
	latency  prometheus.Observer
	errors   prometheus.Counter
	inFlight prometheus.Gauge
	realtime prometheus.Gauge
	// arrivals counts requests per second as they arrive, for the peak
	// rates (not a Prometheus series: read by PeakRequests). Its own
	// allocation: the slot every request writes must not share a cache
	// line with the pointers above, which every request reads.
	arrivals *PeakRate
}

// Begin counts a request in; stream marks a realtime connection.
func (t *Tenant) Begin(stream bool) {
	t.arrivals.Add(time.Now())
	t.inFlight.Inc()
	if stream {
		t.realtime.Inc()
	}
}

// End counts a request out with the status it was answered with; took is
// observed as its latency unless it was a realtime stream.
func (t *Tenant) End(stream bool, status int, took time.Duration) {
	t.inFlight.Dec()
	i := classIndex(status)
	t.requests[i].Inc()
	if i == 3 {
		t.errors.Inc()
	}
	if stream {
		t.realtime.Dec()
		return
	}
	t.latency.Observe(took.Seconds())
}

// PeakRequests returns the most requests that arrived in one second over
// the last minute and over the last hour (see PeakRate.Peaks), since the
// tenant was activated on this node. No lock, no I/O.
func (t *Tenant) PeakRequests(now time.Time) (minute, hour uint64) {
	return t.arrivals.Peaks(now)
}

// TenantTotals is what a tenant's series have counted since it was
// activated: its requests, its 5xx answers, and its request latencies as
// cumulative counts per LatencyBuckets bound (the last is the total).
type TenantTotals struct {
	Requests uint64
	Errors   uint64
	Latency  []uint64
}

// Totals reads t's counters (no I/O; a few atomic loads).
func (t *Tenant) Totals() TenantTotals {
	var tot TenantTotals
	var m dto.Metric
	for _, c := range t.requests {
		m.Reset()
		if c.Write(&m) == nil {
			tot.Requests += uint64(m.GetCounter().GetValue())
		}
	}
	m.Reset()
	if t.errors.Write(&m) == nil {
		tot.Errors = uint64(m.GetCounter().GetValue())
	}
	if h, ok := t.latency.(prometheus.Metric); ok {
		m.Reset()
		if h.Write(&m) == nil {
			for _, b := range m.GetHistogram().GetBucket() {
				tot.Latency = append(tot.Latency, b.GetCumulativeCount())
			}
			tot.Latency = append(tot.Latency, m.GetHistogram().GetSampleCount())
		}
	}
	return tot
}
