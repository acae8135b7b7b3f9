// Package metrics holds pbe's Prometheus metrics: the per-process registry
// every role registers into, and the metric definitions the roles share.
// All names start with pbe_ (plus the standard go_ and process_ series of
// the Go and process collectors: process_resident_memory_bytes,
// process_open_fds, ...).
//
// Tenant node, per active tenant (label tenant; a tenant's series are
// deleted when it stops on the node, so their number is bounded by the
// node's active tenants):
//
//	pbe_tenant_requests_total{tenant,code}            counter, code is 2xx, 3xx, 4xx or 5xx
//	pbe_tenant_request_duration_seconds{tenant}       histogram (realtime streams excluded)
//	pbe_tenant_errors_total{tenant}                   counter of 5xx answers
//	pbe_tenant_requests_in_flight{tenant}             gauge, open realtime streams included
//	pbe_tenant_realtime_connections{tenant}           gauge of open realtime (SSE) streams
//	pbe_tenant_db_bytes{tenant}                       gauge, data.db + auxiliary.db as last measured
//	pbe_tenant_file_bytes{tenant}                     gauge, uploaded files
//	pbe_tenant_replication_lag_seconds{tenant}        gauge, seconds since the object store last held everything
//	pbe_tenant_last_replicated_timestamp_seconds{tenant} gauge, unix time of data.db's last successful sync
//	pbe_tenant_storage_growth_bytes_per_hour{tenant}  gauge, db + file bytes growth over the last hour (sampled, never per request)
//	pbe_tenant_peak_requests_per_second{tenant,window} gauge, busiest second of the last minute (window 1m) or hour (1h)
//	pbe_tenant_storage_quota_headroom_bytes{tenant}   gauge, storage quota minus used (tenants with a storage quota)
//	pbe_tenant_request_quota_headroom{tenant}         gauge, requests left in the current quota window (tenants with a request quota)
//	pbe_tenant_activations_total{tenant}              counter, this node's activations of the tenant since the node started
//	pbe_tenant_evictions_total{tenant}                counter, this node's evictions of the tenant since the node started
//	pbe_tenant_activation_seconds{tenant,kind}        gauge, duration of the activation that opened the tenant; kind as below
//	pbe_tenant_hook_runs_total{tenant}                counter of the tenant's hook runs since it was activated on the node
//	pbe_tenant_hook_errors_total{tenant}              counter of those that failed
//	pbe_tenant_hook_cpu_seconds_total{tenant}         counter of their CPU time
//	pbe_tenant_hook_runtimes{tenant}                  gauge of the JavaScript runtimes its hooks have made
//	pbe_tenant_hook_runtimes_recycled_total{tenant}   counter of runtimes dropped for what their runs allocated
//
// Tenant node, per node:
//
//	pbe_node_active_tenants                           gauge
//	pbe_node_activations_in_progress                  gauge
//	pbe_node_activations_total{kind}                  counter, kind is cold (restored from the object store), warm (local copy) or new
//	pbe_node_activation_duration_seconds{kind}        histogram
//	pbe_node_evictions_total                          counter
//
// Gateway:
//
//	pbe_gateway_requests_total{code}                  counter, code is 2xx..5xx
//	pbe_gateway_route_cache_total{result}             counter, result is hit or miss
//	pbe_gateway_proxy_duration_seconds                histogram of proxied tenant requests
//	pbe_gateway_breaker_state{node}                   gauge, 0 closed, 1 half-open, 2 open
//
// Control plane (read at scrape time):
//
//	pbe_raft_term, pbe_raft_commit_index, pbe_raft_applied_index,
//	pbe_raft_last_snapshot_index                      gauges
//	pbe_raft_leader_known, pbe_raft_is_leader         gauges, 0 or 1
//	pbe_raft_leader_changes_total                     counter of leader changes seen by this member
//	pbe_raft_snapshot_duration_seconds                summary (count and sum) of persisted snapshots
//	pbe_raft_last_snapshot_duration_seconds           gauge
//	pbe_badger_size_bytes{part}                       gauge, part is lsm or vlog
//	pbe_badger_vlog_gc_duration_seconds               summary (count and sum) of value-log GC runs
//	pbe_badger_vlog_gc_rewrites_total                 counter of value-log files rewritten
//	pbe_registry_tenants{state}                       gauge, state is active, archived or deleted
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors. Each pbe process (each platform a test starts) has its own,
// never the global default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves g in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Status classes, the code label of request counters.
var statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

// classIndex maps an HTTP status to its index in statusClasses; anything
// below 300 (1xx included) is 2xx, anything from 500 up is 5xx.
func classIndex(status int) int {
	switch {
	case status < 300:
		return 0
	case status < 400:
		return 1
	case status < 500:
		return 2
	default:
		return 3
	}
}

// StatusClass returns the code label of status ("2xx".."5xx").
func StatusClass(status int) string { return statusClasses[classIndex(status)] }

// LatencyBuckets are the buckets of request latency histograms, in
// seconds: 1 ms to 10 s.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// ActivationBuckets are the buckets of activation durations, in seconds:
// a warm open takes tens of milliseconds, a restore of a large tenant
// minutes.
var ActivationBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
