package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkRecordsMetrics is figure 7: the cost of metrics recording on
// the request path. BenchmarkRecords' list and create through two pbe
// all-in-one platforms in this process, one recording per-request metrics
// (the default) and one with recording off (tenant node and gateway), in
// the order off, on, on, off for each operation (the second of a name is
// reported as name#01), so that a drift over the run (warm-up, a
// neighbour's load) weighs on both sides alike. Compare req/s of
// metrics=on with metrics=off; run the whole benchmark several times.
func BenchmarkRecordsMetrics(b *testing.B) {
	const tenant = "bench"
	on := startBenchPlatform(b)
	setupBenchCollections(b, on.client, on.tenantURL(tenant), on.createTenant(b, tenant, true))
	off := startBenchPlatform(b, func(o *serveOptions) { o.disableMetrics = true })
	setupBenchCollections(b, off.client, off.tenantURL(tenant), off.createTenant(b, tenant, true))

	sides := []struct {
		name string
		p    *benchPlatform
	}{{"off", off}, {"on", on}, {"on", on}, {"off", off}}
	for _, op := range []string{"list", "create"} {
		for _, side := range sides {
			base := side.p.tenantURL(tenant)
			b.Run("op="+op+"/metrics="+side.name, func(b *testing.B) {
				var n atomic.Int64
				runBenchLoad(b, side.p.client, func() (*http.Request, error) {
					if op == "list" {
						return http.NewRequest("GET", base+"/api/collections/posts/records", nil)
					}
					req, err := http.NewRequest("POST", base+"/api/collections/notes/records",
						strings.NewReader(fmt.Sprintf(`{"title":"note %d"}`, n.Add(1))))
					if err == nil {
						req.Header.Set("Content-Type", "application/json")
					}
					return req, err
				})
			})
		}
	}
}
