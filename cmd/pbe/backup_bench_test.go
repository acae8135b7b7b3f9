package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkBackups measures, on an all-in-one platform with the default
// file:// object store, for a tenant of 10 MB and 100 MB of records: a
// point-in-time restore in place (the API call's answer, which comes once
// the restored tenant is open: release with final sync, restore, reopen),
// an export (the archive built from the object store and downloaded) and
// an import of that archive as a new tenant (stored, checked, restored and
// opened), and the first request to the tenant after it was archived (the
// tenant placed on the node and opened from its archive). --max-body is
// raised to 1 GiB for the imports.
func BenchmarkBackups(b *testing.B) {
	for _, mb := range []int{10, 100} {
		b.Run(fmt.Sprintf("size=%dMB", mb), func(b *testing.B) {
			s := startBenchPlatform(b, func(o *serveOptions) { o.maxBody = 1 << 30 })
			g := &testServer{t: b, port: s.port, client: s.client, token: s.token}
			s.createTenant(b, "big", true)
			g.createPostsCollection("big", g.superuserToken("big"))
			fillTenant(b, g, "big", mb)
			time.Sleep(2 * time.Second) // replicated
			point := time.Now().UTC()
			g.createPost("big", "after the point")
			time.Sleep(2 * time.Second)

			var pitr, export, imp, unarchive []time.Duration
			var size int
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				r := g.api("POST", "/api/cp/tenants/big/pitr", map[string]any{"timestamp": point})
				pitr = append(pitr, time.Since(start))
				mustStatus(b, r, http.StatusOK)

				start = time.Now()
				r = g.api("GET", "/api/cp/tenants/big/export", nil)
				export = append(export, time.Since(start))
				mustStatus(b, r, http.StatusOK)
				size = len(r.body)

				start = time.Now()
				r = g.do("POST", g.base()+fmt.Sprintf("/api/cp/tenants/import?id=copy-%d", i), r.body,
					"Authorization", "Bearer "+s.token, "Content-Type", "application/gzip")
				imp = append(imp, time.Since(start))
				mustStatus(b, r, http.StatusCreated)
			}
			// Archiving drops the replica history the restores above use:
			// it is measured last, as many times.
			for range pitr {
				mustStatus(b, g.api("POST", "/api/cp/tenants/big/archive", nil), http.StatusOK)
				start := time.Now()
				r := g.do("GET", g.tenantURL("big", "/api/collections/posts/records?perPage=1"), nil)
				unarchive = append(unarchive, time.Since(start))
				mustStatus(b, r, http.StatusOK)
			}
			reportDurations(b, pitr, "ms-pitr")
			reportDurations(b, export, "ms-export")
			reportDurations(b, imp, "ms-import")
			reportDurations(b, unarchive, "ms-unarchive")
			b.ReportMetric(float64(size)/(1<<20), "MiB-archive")
		})
	}
}
