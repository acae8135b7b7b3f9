package tenantnode

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// scrape gathers the node's metrics: the samples of each family by name.
func scrape(t *testing.T, n *node) map[string][]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n.MetricsCollector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]*dto.Metric{}
	for _, f := range fams {
		out[f.GetName()] = f.GetMetric()
	}
	return out
}

// value returns the sample of family name whose labels include want.
func value(got map[string][]*dto.Metric, name string, want map[string]string) (float64, bool) {
	for _, m := range got[name] {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match != len(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func wantValue(t *testing.T, got map[string][]*dto.Metric, name string, labels map[string]string, want float64) {
	t.Helper()
	v, ok := value(got, name, labels)
	if !ok {
		t.Fatalf("%s%v: not exported", name, labels)
	}
	if v != want {
		t.Fatalf("%s%v: got %v, want %v", name, labels, v, want)
	}
}

func TestManager_MetricsCollector(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, nil)
	n.setup(t, "alpha") // two requests through ServeTenant, both 200
	n.post(t, "alpha", "one")
	if w := n.serve(t, "alpha", "GET", "/api/collections/nope/records", ""); w.Code != 404 {
		t.Fatalf("missing collection: got %d, want 404", w.Code)
	}
	alpha := map[string]string{"tenant": "alpha"}

	t.Run("per-tenant series count requests by status class", func(t *testing.T) {
		got := scrape(t, n)
		wantValue(t, got, "pbe_tenant_requests_total", map[string]string{"tenant": "alpha", "code": "2xx"}, 3)
		wantValue(t, got, "pbe_tenant_requests_total", map[string]string{"tenant": "alpha", "code": "4xx"}, 1)
		wantValue(t, got, "pbe_tenant_requests_total", map[string]string{"tenant": "alpha", "code": "5xx"}, 0)
		wantValue(t, got, "pbe_tenant_errors_total", alpha, 0)
		wantValue(t, got, "pbe_tenant_request_duration_seconds", alpha, 4)
		wantValue(t, got, "pbe_tenant_requests_in_flight", alpha, 0)
		wantValue(t, got, "pbe_node_active_tenants", nil, 1)
		wantValue(t, got, "pbe_node_activations_total", map[string]string{"kind": "new"}, 1)
		if v, _ := value(got, "pbe_tenant_db_bytes", alpha); v <= 0 {
			t.Fatalf("pbe_tenant_db_bytes: got %v, want > 0", v)
		}
		if _, ok := value(got, "pbe_tenant_file_bytes", alpha); !ok {
			t.Fatal("pbe_tenant_file_bytes: not exported")
		}
	})

	t.Run("series disappear when the tenant is evicted", func(t *testing.T) {
		if _, err := n.Evict(context.Background(), "alpha"); err != nil {
			t.Fatal(err)
		}
		got := scrape(t, n)
		for name, ms := range got {
			for _, m := range ms {
				for _, l := range m.GetLabel() {
					if l.GetName() == "tenant" {
						t.Errorf("%s still has a series for tenant %s after eviction", name, l.GetValue())
					}
				}
			}
		}
		wantValue(t, got, "pbe_node_evictions_total", nil, 1)
		wantValue(t, got, "pbe_node_active_tenants", nil, 0)
	})

	t.Run("warm activation from the local copy, cold from the object store", func(t *testing.T) {
		if got := n.count(t, "alpha"); got != 1 {
			t.Fatalf("posts: got %d, want 1", got)
		}
		got := scrape(t, n)
		wantValue(t, got, "pbe_node_activations_total", map[string]string{"kind": "warm"}, 1)
		// A fresh series after re-activation: only the request since.
		wantValue(t, got, "pbe_tenant_requests_total", map[string]string{"tenant": "alpha", "code": "2xx"}, 1)
		if _, ok := value(got, "pbe_node_activations_total", map[string]string{"kind": "cold"}); ok {
			t.Fatal("cold activation counted before any restore")
		}

		if err := n.Remove(context.Background(), "alpha"); err != nil {
			t.Fatal(err)
		}
		if got := n.count(t, "alpha"); got != 1 {
			t.Fatalf("posts after restore: got %d, want 1", got)
		}
		got = scrape(t, n)
		wantValue(t, got, "pbe_node_activations_total", map[string]string{"kind": "cold"}, 1)
		wantValue(t, got, "pbe_node_activations_total", map[string]string{"kind": "warm"}, 1)
		wantValue(t, got, "pbe_node_activation_duration_seconds", map[string]string{"kind": "cold"}, 1)
		wantValue(t, got, "pbe_node_activations_in_progress", nil, 0)
	})
}

func TestManager_DisableMetricsRecordsNoRequests(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, func(c *Config) { c.DisableMetrics = true })
	n.setup(t, "alpha")
	got := scrape(t, n)
	if _, ok := value(got, "pbe_tenant_requests_total", map[string]string{"tenant": "alpha"}); ok {
		t.Fatal("requests recorded with DisableMetrics set")
	}
	wantValue(t, got, "pbe_node_active_tenants", nil, 1)
}

func TestManager_MetricsQuotaHeadroom(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	if _, ok := value(scrape(t, n), "pbe_tenant_storage_quota_headroom_bytes", map[string]string{"tenant": id}); ok {
		t.Fatal("storage headroom exported for a tenant without a storage quota")
	}
	const storage = 1 << 30
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{RequestsPerDay: 5, StorageBytes: storage}}))
	for range 2 {
		if w := n.serve(t, id, "GET", "/api/collections/posts/records", ""); w.Code != 200 {
			t.Fatalf("list: got %d, want 200", w.Code)
		}
	}
	got := scrape(t, n)
	tenant := map[string]string{"tenant": id}
	wantValue(t, got, "pbe_tenant_request_quota_headroom", tenant, 3)
	db, _ := value(got, "pbe_tenant_db_bytes", tenant)
	files, _ := value(got, "pbe_tenant_file_bytes", tenant)
	wantValue(t, got, "pbe_tenant_storage_quota_headroom_bytes", tenant, storage-db-files)
}
