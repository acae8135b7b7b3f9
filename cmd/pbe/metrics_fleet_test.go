package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestFleet_Metrics scrapes /metrics on each role of a fleet of processes:
// the gateway and tenant node with the cluster secret only, the control
// plane with an operator token too.
func TestFleet_Metrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1")
	f.createTenant("acme", "async")
	g := f.gateway()
	g.createPost("acme", "one")
	mustStatus(t, g.do("GET", g.tenantURL("acme", "/api/collections/nope/records"), nil), http.StatusNotFound)

	secret := []string{"Authorization", "Bearer " + testClusterSecret}
	operator := []string{"Authorization", "Bearer " + testAdminToken}
	for _, tc := range []struct {
		role     string
		port     string
		operator int // status with an operator token
		want     []string
	}{
		{"gateway", f.gwPort, http.StatusUnauthorized, []string{
			`pbe_gateway_requests_total{code="4xx"}`,
			`pbe_gateway_route_cache_total{result="hit"}`,
			`pbe_gateway_breaker_state{node="127.0.0.1:` + f.nodePort["tn-1"] + `"} 0`,
			`pbe_gateway_proxy_duration_seconds_count`,
		}},
		{"tenant node", f.nodePort["tn-1"], http.StatusUnauthorized, []string{
			`pbe_tenant_requests_total{code="4xx",tenant="acme"} 1`,
			`pbe_node_active_tenants 1`,
			`process_open_fds`,
		}},
		{"control plane", f.cps.http[0], http.StatusOK, []string{
			`pbe_raft_is_leader 1`,
			`pbe_registry_tenants{state="active"} 1`,
			`pbe_badger_size_bytes{part="lsm"}`,
		}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			url := "http://localhost:" + tc.port + "/metrics"
			s := &testServer{t: t, port: tc.port, client: loopbackClient(tc.port)}
			mustStatus(t, s.do("GET", url, nil), http.StatusUnauthorized)
			if r := s.do("GET", url, nil, operator...); r.status != tc.operator {
				t.Fatalf("operator token: got %d, want %d", r.status, tc.operator)
			}
			r := s.do("GET", url, nil, secret...)
			mustStatus(t, r, http.StatusOK)
			for _, want := range tc.want {
				if !strings.Contains(string(r.body), want) {
					t.Errorf("%s metrics lack %s", tc.role, want)
				}
			}
		})
	}
}
