package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/gateway"
	"github.com/pbe/pbe/health"
)

// startGateway starts a gateway in its own process: tenants are proxied to
// their nodes (routes from the control plane's watch stream), the base
// domain's platform API to the control plane.
func (p *platform) startGateway(ctx context.Context, o *serveOptions, checks *health.Checker, logger *slog.Logger) (http.Handler, error) {
	cp := controlplane.NewHTTPClient(o.controlPlane, o.clusterSecret).WithRetry(5 * time.Second)
	p.cpClient = cp
	pcfg := gateway.DefaultProxyConfig()
	pcfg.ClusterSecret = o.clusterSecret
	pcfg.Logger = logger
	pcfg.Metrics = p.registerGatewayMetrics()
	proxy, err := gateway.NewProxy(pcfg, cp)
	if err != nil {
		return nil, err
	}
	p.metrics.MustRegister(proxy.MetricsCollector())
	if err := proxy.Start(ctx); err != nil {
		return nil, err
	}
	p.proxy = proxy
	checks.Add("route_feed", func(context.Context) error { return proxy.Fresh() })

	var urls []string
	for _, a := range strings.Split(o.controlPlane, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if !strings.Contains(a, "://") {
				a = "http://" + a
			}
			urls = append(urls, a)
		}
	}
	base := http.NewServeMux()
	base.Handle("GET /healthz", health.LiveHandler())
	base.Handle("GET /readyz", checks.ReadyHandler())
	ops := guardedOps(p.metrics, o.clusterSecret, nil)
	base.Handle("GET "+metricsPath, ops)
	base.Handle("GET "+pprofPath, ops)
	base.HandleFunc("/api/cp/internal/", func(w http.ResponseWriter, r *http.Request) {
		// Only on the control plane's own address, never through the public gateway.
		cluster.WriteJSONError(w, http.StatusNotFound, cluster.ErrorBody{Code: "not_found", Message: "no such API route"})
	})
	base.Handle("/", gateway.NewPlatformProxy(urls, o.clusterSecret, logger))

	gwCfg := gateway.DefaultConfig()
	gwCfg.Domain = o.domain
	gwCfg.AllowTenantHeader = o.allowTenantHeader
	gwCfg.MaxBodyBytes = int64(o.maxBody)
	gwCfg.Logger = logger
	gwCfg.Metrics = p.gwMetrics
	gw, err := gateway.New(gwCfg, base, proxy)
	if err != nil {
		return nil, err
	}
	return gw.WithDomains(proxy), nil
}
