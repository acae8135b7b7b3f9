package main

import (
	"net/http"
	"testing"

	"github.com/pbe/pbe/cluster"
)

// TestClientIP_ThroughGatewayAndFollower: the control plane records the
// client's address, not the gateway's or the forwarding follower's, and
// believes no one else who claims an address.
func TestClientIP_ThroughGatewayAndFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleetCP(t, 3)
	leader := f.cps.leader()
	follower := (leader + 1) % 3
	create := func(id, src, port string, hdr ...string) {
		t.Helper()
		s := &testServer{t: t, port: port, token: testAdminToken, client: loopbackClientFrom(src, port)}
		mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]string{"id": id}, hdr...), http.StatusCreated)
	}
	create("via-gateway", "127.0.0.2", f.gwPort, cluster.HeaderClientIP, "203.0.113.7")
	create("via-follower", "127.0.0.3", f.cps.http[follower])
	create("forged", "127.0.0.4", f.cps.http[leader], cluster.HeaderClientIP, "203.0.113.8", cluster.HeaderSecret, "not-the-secret")

	s := &testServer{t: t, port: f.cps.http[leader], token: testAdminToken, client: loopbackClient(f.cps.http[leader])}
	r := s.api("GET", "/api/cp/audit", nil)
	mustStatus(t, r, http.StatusOK)
	var audit struct {
		Items []struct{ Action, Target, IP string }
	}
	r.json(t, &audit)
	got := map[string]string{}
	for _, e := range audit.Items {
		if e.Action == "tenant_create" {
			got[e.Target] = e.IP
		}
	}
	for target, want := range map[string]string{"via-gateway": "127.0.0.2", "via-follower": "127.0.0.3", "forged": "127.0.0.4"} {
		if got[target] != want {
			t.Errorf("audit of creating %s: ip %q, want %q (all: %v)", target, got[target], want, got)
		}
	}
}
