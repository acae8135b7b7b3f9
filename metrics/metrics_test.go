package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestStatusClass(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{{101, "2xx"}, {200, "2xx"}, {204, "2xx"}, {301, "3xx"}, {304, "3xx"}, {400, "4xx"}, {404, "4xx"}, {429, "4xx"}, {500, "5xx"}, {503, "5xx"}, {599, "5xx"}} {
		if got := StatusClass(tc.status); got != tc.want {
			t.Errorf("StatusClass(%d): got %s, want %s", tc.status, got, tc.want)
		}
	}
}

func TestNewRegistry_HasProcessMetrics(t *testing.T) {
	fams, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		got[f.GetName()] = true
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
		if !got[name] {
			t.Errorf("%s: not exported", name)
		}
	}
}

func TestTenantNode_DeleteTenant(t *testing.T) {
	n := NewTenantNode()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n)
	a, b := n.Tenant("alpha"), n.Tenant("bravo")
	a.Begin(false)
	a.End(false, 404, time.Millisecond)
	b.Begin(false)
	b.End(false, 500, time.Millisecond)
	n.DeleteTenant("alpha")
	a.Begin(false) // a resolved Tenant stays usable after its deletion
	a.End(false, 200, time.Millisecond)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" && l.GetValue() == "alpha" {
					t.Errorf("%s still has a series for the deleted tenant", f.GetName())
				}
			}
			if f.GetName() == "pbe_tenant_errors_total" && m.GetCounter().GetValue() != 1 {
				t.Errorf("bravo's 5xx: got %v, want 1", m.GetCounter().GetValue())
			}
		}
	}
}

// BenchmarkTenant_Record is what one tenant request pays for metrics:
// Begin and End on pre-resolved series, from every core at once on one
// tenant (the contended case).
func BenchmarkTenant_Record(b *testing.B) {
	t := NewTenantNode().Tenant("bench")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			t.Begin(false)
			t.End(false, 200, time.Since(start))
		}
	})
}

// TestTenantNode_ActivationsPerTenant: a tenant's activations and
// evictions on the node are counted across its activations, and exported
// while it is active with the kind and duration of the latest.
func TestTenantNode_ActivationsPerTenant(t *testing.T) {
	n := NewTenantNode()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n)
	n.Tenant("alpha")
	n.Activated("alpha", ActivationCold, 200*time.Millisecond)
	n.Evicted("alpha")
	n.DeleteTenant("alpha")
	n.Tenant("alpha")
	n.Activated("alpha", ActivationWarm, 5*time.Millisecond)

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"pbe_tenant_activations_total,tenant=alpha":            2,
		"pbe_tenant_evictions_total,tenant=alpha":              1,
		"pbe_tenant_activation_seconds,kind=warm,tenant=alpha": 0.005,
	} {
		if got[key] != want {
			t.Errorf("%s: got %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got["pbe_tenant_activation_seconds,kind=cold,tenant=alpha"]; ok {
		t.Error("the previous activation's kind is still exported")
	}
}
