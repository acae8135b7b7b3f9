package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
)

// Fleet benchmarks: a control plane, tenant nodes and a gateway as pbe
// processes on a real S3-compatible server (versitygw) on loopback. Select
// them explicitly, e.g.
//
//	go test ./cmd/pbe -run '^$' -bench 'Fleet_' -benchtime 5x

// fillTenant writes about mb MiB of incompressible records into tenant
// id's posts collection through the gateway's batch API.
func fillTenant(b *testing.B, g *testServer, id string, mb int) {
	b.Helper()
	tok := g.superuserToken(id)
	mustStatus(b, g.do("PATCH", g.tenantURL(id, "/api/settings"), `{"batch":{"enabled":true,"maxRequests":100,"timeout":30,"maxBodySize":0}}`,
		"Authorization", tok, "Content-Type", "application/json"), http.StatusOK)
	const perRecord = 4 << 10 // hex characters; a text field holds at most 5,000
	const perBatch = 50
	records := mb << 20 / perRecord
	for done := 0; done < records; done += perBatch {
		reqs := make([]string, 0, perBatch)
		for range perBatch {
			buf := make([]byte, perRecord/2)
			_, _ = rand.Read(buf)
			reqs = append(reqs, `{"method":"POST","url":"/api/collections/posts/records","body":{"title":"`+hex.EncodeToString(buf)+`"}}`)
		}
		r := g.do("POST", g.tenantURL(id, "/api/batch"), `{"requests":[`+strings.Join(reqs, ",")+`]}`, "Authorization", tok, "Content-Type", "application/json")
		if r.status != http.StatusOK {
			b.Fatalf("batch insert: %d %.300s", r.status, r.body)
		}
	}
}

// nodeOrder sends an order to a tenant node's internal API.
func (f *fleet) nodeOrder(b *testing.B, node, tenant, order string) {
	b.Helper()
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+f.nodePort[node]+"/internal/tenants/"+tenant+"/"+order, strings.NewReader(`{}`))
	req.Header.Set(cluster.HeaderSecret, testClusterSecret)
	resp, err := loopbackClient(f.nodePort[node]).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.Fatalf("%s of %s on %s: %s", order, tenant, node, resp.Status)
	}
}

// BenchmarkFleet_ColdStartFromS3 measures the first request to a tenant
// whose node has no local copy: restore of both databases from S3, open,
// answer.
func BenchmarkFleet_ColdStartFromS3(b *testing.B) {
	for _, mb := range []int{10, 100} {
		b.Run(fmt.Sprintf("size=%dMB", mb), func(b *testing.B) {
			f := startFleetLease(b, 1, controlplane.DefaultLease, "tn-1")
			f.createTenant("big", "async")
			g := f.gateway()
			fillTenant(b, g, "big", mb)
			f.waitReplicated("big")
			var ds []time.Duration
			for b.Loop() {
				b.StopTimer()
				f.nodeOrder(b, "tn-1", "big", "remove") // drop the local copy
				b.StartTimer()
				start := time.Now()
				mustStatus(b, g.do("GET", g.tenantURL("big", "/api/collections/posts/records?perPage=1"), nil), http.StatusOK)
				ds = append(ds, time.Since(start))
			}
			reportDurations(b, ds, "ms-cold-start")
		})
	}
}

// BenchmarkFleet_Failover kills (SIGKILL) the node serving a tenant and
// measures the time to the first successful request through the gateway,
// with the default lease.
func BenchmarkFleet_Failover(b *testing.B) {
	f := startFleetLease(b, 1, controlplane.DefaultLease, "n0", "n1")
	f.createTenant("acme", "async")
	g := f.gateway()
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		victim := f.owner("acme")
		g.createPost("acme", fmt.Sprintf("before kill %d", i))
		// An async tenant may lose its last replication interval; what is
		// measured here is the time to serve again, from a complete replica.
		f.waitReplicated("acme")
		killedAt := f.kill(victim)
		quick := &testServer{t: b, port: f.gwPort, client: &http.Client{Transport: loopbackClient(f.gwPort).Transport, Timeout: 120 * time.Second}}
		deadline := killedAt.Add(90 * time.Second)
		for {
			r := quick.do("GET", quick.tenantURL("acme", "/api/collections/posts/records?perPage=1"), nil)
			if r.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no failover of acme from %s within 90s: last answer %d %s", victim, r.status, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		ds = append(ds, time.Since(killedAt))
		f.startNode(victim)
	}
	reportDurations(b, ds, "s-failover")
}

// BenchmarkFleet_MoveWait moves a 10 MB tenant back and forth between two
// nodes while 16 clients read and write through the gateway, and reports
// the longest any request waited.
func BenchmarkFleet_MoveWait(b *testing.B) {
	f := startFleetLease(b, 1, controlplane.DefaultLease, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	fillTenant(b, g, "acme", 10)
	var worst []time.Duration
	var failed int
	for b.Loop() {
		l := startLoad(g, "acme", 16, true)
		time.Sleep(500 * time.Millisecond)
		if _, err := f.api.MoveTenant(context.Background(), "acme", ""); err != nil {
			b.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		_, failures, maxWait := l.finish()
		failed += len(failures)
		worst = append(worst, maxWait)
	}
	reportDurations(b, worst, "s-longest-wait")
	b.ReportMetric(float64(failed), "failed")
}

// BenchmarkFleet_GatewayOverhead compares a record list through the gateway
// with the same request sent straight to the node: one client (the added
// latency) and 16 concurrent clients (throughput on a shared machine).
func BenchmarkFleet_GatewayOverhead(b *testing.B) {
	f := startFleetLease(b, 1, controlplane.DefaultLease, "tn-1")
	f.createTenant("acme", "async")
	g := f.gateway()
	for i := range 20 {
		g.createPost("acme", fmt.Sprintf("post %d", i))
	}
	tn, _ := f.api.GetTenantStrong(context.Background(), "acme")
	direct := func(req *http.Request) {
		req.URL.Host = "127.0.0.1:" + f.nodePort["tn-1"]
		req.Header.Set(cluster.HeaderSecret, testClusterSecret)
		req.Header.Set(cluster.HeaderTenant, "acme")
		req.Header.Set(cluster.HeaderEpoch, fmt.Sprint(tn.Epoch))
	}
	for _, clients := range []int{1, 16} {
		for _, tc := range []struct {
			name   string
			port   string
			adjust func(*http.Request)
		}{
			{"via=gateway", f.gwPort, func(*http.Request) {}},
			{"via=direct", f.nodePort["tn-1"], direct},
		} {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, tc.name), func(b *testing.B) {
				client := loopbackClient(tc.port)
				get := func() (time.Duration, error) {
					req, _ := http.NewRequest("GET", "http://acme.localhost:"+f.gwPort+"/api/collections/posts/records", nil)
					tc.adjust(req)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						return 0, err
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return 0, fmt.Errorf("list: %s", resp.Status)
					}
					return time.Since(t0), nil
				}
				var lat sync.Map
				var n atomic.Int64
				b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
				start := time.Now()
				work := func(next func() bool) {
					var mine []time.Duration
					for next() {
						d, err := get()
						if err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, d)
					}
					lat.Store(n.Add(1), mine)
				}
				if clients == 1 {
					work(b.Loop)
				} else {
					b.RunParallel(func(pb *testing.PB) { work(pb.Next) })
				}
				elapsed := time.Since(start)
				var all []time.Duration
				lat.Range(func(_, v any) bool { all = append(all, v.([]time.Duration)...); return true })
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
				reportDurations(b, all, "ms")
			})
		}
	}
}

// BenchmarkFleet_DurableWrites compares record creates in a sync tenant
// (acknowledged after the commit is in S3) with an async one, 32 concurrent
// clients through the gateway.
func BenchmarkFleet_DurableWrites(b *testing.B) {
	f := startFleetLease(b, 1, controlplane.DefaultLease, "tn-1")
	f.createTenant("durable", "sync")
	f.createTenant("lazy", "async")
	g := f.gateway()
	for _, id := range []string{"durable", "lazy"} {
		b.Run("tenant="+id, func(b *testing.B) {
			client := g.client
			var lat sync.Map
			var n, seq atomic.Int64
			b.SetParallelism(16) // 32 clients on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					body := fmt.Sprintf(`{"title":"w%d"}`, seq.Add(1))
					req, _ := http.NewRequest("POST", g.tenantURL(id, "/api/collections/posts/records"), strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("write: %v %v", err, resp)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mine = append(mine, time.Since(t0))
				}
				lat.Store(n.Add(1), mine)
			})
			elapsed := time.Since(start)
			var all []time.Duration
			lat.Range(func(_, v any) bool { all = append(all, v.([]time.Duration)...); return true })
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
			reportDurations(b, all, "ms")
		})
	}
}
