package controlplane

import (
	"net/http"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
)

// A tenant's recent use, from its node's heartbeats: the leader keeps a
// few of each active tenant's reported totals, about usageSpacing apart
// over the last usageWindow, and derives rates and the latency p95 from
// the difference between the oldest and the newest. Nothing is recorded
// per request on the control plane.
const (
	usageWindow  = time.Minute
	usageSpacing = 10 * time.Second
)

type usageSample struct {
	at time.Time
	r  cluster.TenantReport
}

// usageRing is one tenant's samples: kept ones, oldest first, and the
// latest report.
type usageRing struct {
	node   string
	kept   []usageSample
	latest usageSample
}

// add records a report; a node change or counters that went back (the
// tenant was reactivated) start over.
func (u *usageRing) add(node string, r cluster.TenantReport, now time.Time) {
	if u.node != node || r.Requests < u.latest.r.Requests {
		*u = usageRing{node: node}
	}
	s := usageSample{at: now, r: r}
	if len(u.kept) == 0 || now.Sub(u.kept[len(u.kept)-1].at) >= usageSpacing {
		u.kept = append(u.kept, s)
	}
	for len(u.kept) > 1 && now.Sub(u.kept[0].at) > usageWindow+usageSpacing {
		u.kept = u.kept[1:]
	}
	u.latest = s
}

// TenantUsage is a tenant's recent use, as GET /api/cp/tenants/{id}/metrics
// shows it to its owner.
type TenantUsage struct {
	Tenant string `json:"tenant"`
	// Active is whether a node serves the tenant now; the figures below
	// are about its last minute there.
	Active            bool     `json:"active"`
	Node              string   `json:"node,omitempty"`
	WindowSeconds     float64  `json:"window_seconds"`
	Requests          uint64   `json:"requests"`
	RequestsPerSecond float64  `json:"requests_per_second"`
	Errors            uint64   `json:"errors"`
	ErrorsPerSecond   float64  `json:"errors_per_second"`
	P95Seconds        *float64 `json:"p95_seconds,omitempty"`
	DBBytes           int64    `json:"db_bytes"`
	FileBytes         int64    `json:"file_bytes"`
	StorageBytes      int64    `json:"storage_bytes"`
	// GrowthBytesPerHour is the storage's growth over the last hour (or
	// since activation, when shorter), as the tenant's node measured it.
	GrowthBytesPerHour float64 `json:"growth_bytes_per_hour"`
	// PeakRequestsPerSecond1m and 1h are the most requests the tenant
	// received in one second over the last minute and the last hour
	// (since its activation on its node, when shorter).
	PeakRequestsPerSecond1m uint64    `json:"peak_requests_per_second_1m"`
	PeakRequestsPerSecond1h uint64    `json:"peak_requests_per_second_1h"`
	LagSeconds              float64   `json:"replication_lag_seconds"`
	LastReplicatedAt        time.Time `json:"last_replicated_at,omitzero"`
	// Quota is the tenant's; zero values are unlimited.
	Quota cluster.TenantQuota `json:"quota"`
}

// usage returns tenant's recent use as the leader has seen it.
func (f *fleet) usage(t cluster.Tenant) TenantUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := TenantUsage{Tenant: t.ID, Quota: t.Quota}
	u, ok := f.usages[t.ID]
	if !ok || u.node != t.Node {
		return out
	}
	last := u.latest.r
	out.Active, out.Node = true, u.node
	out.DBBytes, out.FileBytes = last.DBBytes, last.FileBytes
	out.StorageBytes = last.DBBytes + last.FileBytes
	out.GrowthBytesPerHour = last.GrowthBytesPerHour
	out.PeakRequestsPerSecond1m, out.PeakRequestsPerSecond1h = last.PeakRequestsMinute, last.PeakRequestsHour
	out.LagSeconds, out.LastReplicatedAt = last.LagSeconds, last.LastReplicatedAt
	first := u.kept[0]
	dt := u.latest.at.Sub(first.at).Seconds()
	out.WindowSeconds = dt
	out.Requests = last.Requests - first.r.Requests
	out.Errors = last.Errors - first.r.Errors
	if dt > 0 {
		out.RequestsPerSecond = float64(out.Requests) / dt
		out.ErrorsPerSecond = float64(out.Errors) / dt
	}
	out.P95Seconds = p95(first.r.Latency, last.Latency)
	return out
}

// p95 estimates the 95th percentile latency between two cumulative
// bucket readings (metrics.LatencyBuckets bounds, then the total), by
// linear interpolation within the bucket that holds it.
func p95(before, after []uint64) *float64 {
	bounds := metrics.LatencyBuckets
	if len(after) != len(bounds)+1 {
		return nil
	}
	delta := func(i int) float64 {
		if len(before) == len(after) {
			return float64(after[i] - before[i])
		}
		return float64(after[i])
	}
	total := delta(len(bounds))
	if total == 0 {
		return nil
	}
	want := 0.95 * total
	lower, below := 0.0, 0.0
	for i, upper := range bounds {
		n := delta(i)
		if n >= want {
			v := lower
			if n > below {
				v = lower + (upper-lower)*(want-below)/(n-below)
			}
			return &v
		}
		lower, below = upper, n
	}
	v := bounds[len(bounds)-1] // past the last bound: at least this
	return &v
}

// handleTenantMetrics shows a tenant's recent use to its owner (and
// operators). It runs on the leader, which receives the heartbeats.
func (c *ControlPlane) handleTenantMetrics(w http.ResponseWriter, r *http.Request) {
	t, err := c.pathOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c.fleet.usage(t))
}
