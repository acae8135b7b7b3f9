package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
)

// serveFrontWithMetrics is serveFront with the gateway recording into m.
func serveFrontWithMetrics(t *testing.T, tenants Tenants, m *metrics.Gateway) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Domain = "example.com"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Metrics = m
	g, err := New(cfg, http.NotFoundHandler(), tenants)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProxy_Metrics(t *testing.T) {
	t.Run("route cache, status classes and proxy latency", func(t *testing.T) {
		node := newNode(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/missing" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		cp := newFakeCP()
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: node.addr, Epoch: 1})
		m := metrics.NewGateway()
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.Metrics = m })
		front := serveFrontWithMetrics(t, p, m)
		for _, path := range []string{"/api/health", "/api/health", "/missing"} {
			call(t, front, http.MethodGet, path, nil, nil)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m, p.MetricsCollector())
		for _, tc := range []struct {
			name  string
			value float64
		}{
			{`pbe_gateway_route_cache_total{result="miss"}`, 1},
			{`pbe_gateway_route_cache_total{result="hit"}`, 2},
			{`pbe_gateway_requests_total{code="2xx"}`, 2},
			{`pbe_gateway_requests_total{code="4xx"}`, 1},
			{`pbe_gateway_breaker_state{node="` + node.addr + `"}`, 0},
		} {
			if got := gatheredValue(t, reg, tc.name); got != tc.value {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.value)
			}
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var observed uint64
		for _, f := range fams {
			if f.GetName() == "pbe_gateway_proxy_duration_seconds" {
				observed = f.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		if observed != 3 {
			t.Errorf("proxy latency observations: got %d, want 3", observed)
		}
	})
	t.Run("open breaker is 2", func(t *testing.T) {
		dead := deadAddr(t)
		cp := newFakeCP()
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: dead, Epoch: 1})
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.HoldTimeout = 300 * time.Millisecond })
		front := serveFront(t, p)
		for i := 0; i < 10 && p.breakers.get(dead).State().String() != "open"; i++ {
			call(t, front, http.MethodGet, "/api/health", nil, nil)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(p.MetricsCollector())
		if got := gatheredValue(t, reg, `pbe_gateway_breaker_state{node="`+dead+`"}`); got != 2 {
			t.Errorf("breaker state of a dead node: got %v, want 2 (open)", got)
		}
	})
}

// gatheredValue returns the value of one series, named as in the text
// format (name{label="value",...}), or fails the test.
func gatheredValue(t *testing.T, g prometheus.Gatherer, series string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			if len(m.GetLabel()) > 0 {
				name += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						name += ","
					}
					name += l.GetName() + `="` + l.GetValue() + `"`
				}
				name += "}"
			}
			if name != series {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("%s: not exported", series)
	return 0
}
