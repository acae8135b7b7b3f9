package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway is the metrics a gateway records. Its methods take no lock
// (pre-resolved series, atomic updates). It is a prometheus.Collector;
// the breaker states are the proxy's own scrape-time collector, using
// DescBreakerState.
type Gateway struct {
	requests     [len(statusClasses)]prometheus.Counter
	requestsVec  *prometheus.CounterVec
	cacheVec     *prometheus.CounterVec
	hit, miss    prometheus.Counter
	proxyLatency prometheus.Histogram
}

// DescBreakerState describes a gateway's circuit breaker per node: 0
// closed, 1 half-open, 2 open.
var DescBreakerState = prometheus.NewDesc("pbe_gateway_breaker_state",
	"Circuit breaker state of a tenant node's address: 0 closed, 1 half-open, 2 open.", []string{"node"}, nil)

// NewGateway returns a gateway's metrics.
func NewGateway() *Gateway {
	g := &Gateway{
		requestsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_gateway_requests_total", Help: "Requests answered by the gateway, by status class.",
		}, []string{"code"}),
		cacheVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbe_gateway_route_cache_total", Help: "Route lookups of proxied tenant requests, by result (hit, miss).",
		}, []string{"result"}),
		proxyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pbe_gateway_proxy_duration_seconds", Help: "Time to proxy a tenant request to its node, holds and retries included (realtime streams excluded).",
			Buckets: LatencyBuckets,
		}),
	}
	for i, c := range statusClasses {
		g.requests[i] = g.requestsVec.WithLabelValues(c)
	}
	g.hit = g.cacheVec.WithLabelValues("hit")
	g.miss = g.cacheVec.WithLabelValues("miss")
	return g
}

// Describe implements prometheus.Collector.
func (g *Gateway) Describe(ch chan<- *prometheus.Desc) {
	g.requestsVec.Describe(ch)
	g.cacheVec.Describe(ch)
	g.proxyLatency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (g *Gateway) Collect(ch chan<- prometheus.Metric) {
	g.requestsVec.Collect(ch)
	g.cacheVec.Collect(ch)
	g.proxyLatency.Collect(ch)
}

// Request counts a request answered with status. A nil Gateway records
// nothing.
func (g *Gateway) Request(status int) {
	if g != nil {
		g.requests[classIndex(status)].Inc()
	}
}

// RouteCache counts a route lookup that hit or missed the cache.
func (g *Gateway) RouteCache(hit bool) {
	switch {
	case g == nil:
	case hit:
		g.hit.Inc()
	default:
		g.miss.Inc()
	}
}

// Proxied observes the time a proxied request took.
func (g *Gateway) Proxied(took time.Duration) {
	if g != nil {
		g.proxyLatency.Observe(took.Seconds())
	}
}
