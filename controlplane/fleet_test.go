package controlplane

import (
	"testing"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// TestFleet_RecordLagEvents: a tenant whose lag crosses LagEventSeconds
// between two reports is replication.lagging, and back below it
// replication.recovered.
func TestFleet_RecordLagEvents(t *testing.T) {
	f := newFleet()
	f.lead(true)
	report := func(lag float64) []cluster.Event {
		return f.record(cluster.Heartbeat{Node: "tn-1", Tenants: []cluster.TenantReport{{ID: "acme", Epoch: 1, LagSeconds: lag}}})
	}
	types := func(es []cluster.Event) (ts []string) {
		for _, e := range es {
			ts = append(ts, e.Type)
		}
		return ts
	}
	report(0)
	for _, step := range []struct {
		lag  float64
		want string
	}{{0, ""}, {4, ""}, {LagEventSeconds + 1, store.EventReplicationLagging}, {LagEventSeconds + 5, ""}, {0, store.EventReplicationRecovered}} {
		got := types(report(step.lag))
		if step.want == "" && len(got) != 0 || step.want != "" && (len(got) != 1 || got[0] != step.want) {
			t.Errorf("lag %v: got events %v, want %q", step.lag, got, step.want)
		}
	}
}
