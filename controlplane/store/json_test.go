package store

import (
	stdjson "encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// TestJSONMatchesTheStandardLibrary checks that the state machine's JSON
// (segmentio's encoder and decoder) writes the bytes the standard library
// writes for the state's records and reads them back the same: a node
// built with either keeps state its peers can read.
func TestJSONMatchesTheStandardLibrary(t *testing.T) {
	at := time.Date(2026, 11, 29, 4, 5, 6, 789012345, time.FixedZone("x", 3600))
	utc := at.UTC()
	values := []any{
		cluster.Tenant{ID: "acme", Name: "Acme <\"Inc\"> & co \u2028 é", State: cluster.TenantActive, Durability: cluster.DurabilitySync,
			Node: "tn-1", Epoch: 7, RestoreEpoch: 6, Domains: []string{"shop.example.com"}, Owner: "u1", Suspended: true,
			Restore: &cluster.RestoreSpec{From: "old", Epoch: 3, At: at, Since: 7}, ArchivedAt: &utc, CreatedAt: at, UpdatedAt: utc, Version: 42},
		cluster.Event{ID: "00000000000000000042-0000", Time: at, Type: EventTenantCreated, Tenant: "acme",
			Data: map[string]any{"b": 1.5, "a": []any{"x", nil, true}, "z": map[string]any{"k": "v"}}},
		outcome{Type: CmdCreateTenant, Time: at, Value: stdjson.RawMessage(`{"id":"acme"}`)},
		Command{Type: CmdDeleteTenant, Version: CommandVersion, RequestID: "r1", Time: at, Data: stdjson.RawMessage(`{"id":"acme"}`),
			Audit: []cluster.AuditEntry{{Action: "tenant_delete", Target: "acme", Actor: "operator:x", IP: "10.0.0.1", Time: at}}},
		CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: "bad \xff utf-8", Durability: cluster.DurabilityAsync, Owner: "u1"}},
		map[string]int{"b": 2, "a": 1},
	}
	for _, v := range values {
		want, err := stdjson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%T:\n segmentio %s\n stdlib    %s", v, got, want)
		}
		p1, p2 := reflect.New(reflect.TypeOf(v)), reflect.New(reflect.TypeOf(v))
		if err := json.Unmarshal(want, p1.Interface()); err != nil {
			t.Fatal(err)
		}
		if err := stdjson.Unmarshal(want, p2.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p1.Elem().Interface(), p2.Elem().Interface()) {
			t.Errorf("%T decodes differently:\n segmentio %+v\n stdlib    %+v", v, p1.Elem().Interface(), p2.Elem().Interface())
		}
	}
}
