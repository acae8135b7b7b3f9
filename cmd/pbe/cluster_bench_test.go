package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pbe/pbe/controlplane"
)

// These benchmarks run control-plane clusters of real pbe processes on
// loopback: Raft over TCP with the authenticated transport, raft-wal with
// fsync, Badger. Select them explicitly, e.g.
//
//	go test ./cmd/pbe -run '^$' -bench 'Cluster_CreateTenants' -benchtime 20000x

// BenchmarkCluster_CreateTenants measures tenant creates per second through
// the API of a 3-node cluster with 64 concurrent clients: each client given
// one node, spread over all three (followers forward to the leader), or
// given all three nodes (the client finds the leader).
func BenchmarkCluster_CreateTenants(b *testing.B) {
	for _, mode := range []string{"one-node-each", "all-nodes"} {
		b.Run("clients="+mode, func(b *testing.B) {
			c := startCluster(b, 3)
			var clients []*controlplane.HTTPClient
			if mode == "all-nodes" {
				clients = []*controlplane.HTTPClient{c.client(0), c.client(1), c.client(2)}
			} else {
				clients = []*controlplane.HTTPClient{c.nodeClient(0), c.nodeClient(1), c.nodeClient(2)}
			}
			var seq, failed atomic.Int64
			b.SetParallelism(32) // 64 goroutines with GOMAXPROCS=2
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					n := seq.Add(1)
					if _, err := clients[n%3].CreateTenant(ctx, controlplane.CreateTenantInput{ID: fmt.Sprintf("t-%d", n)}); err != nil {
						failed.Add(1)
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "creates/s")
			b.ReportMetric(float64(failed.Load()), "failed")
		})
	}
}

// BenchmarkCluster_Failover kills the leader of a 3-node cluster with SIGKILL
// b.N times and measures the time from the kill to the next acknowledged
// write (tried every 10 ms on the surviving nodes).
func BenchmarkCluster_Failover(b *testing.B) {
	c := startCluster(b, 3)
	var gaps []time.Duration
	for i := 0; i < b.N; i++ {
		victim := c.leader()
		survivors := []*controlplane.HTTPClient{c.nodeClient((victim + 1) % 3).WithRetry(0), c.nodeClient((victim + 2) % 3).WithRetry(0)}
		killed := time.Now()
		_ = c.procs[victim].cmd.Process.Kill()
		<-c.procs[victim].exited
		for k := 0; ; k++ {
			id := fmt.Sprintf("fo-%d-%d", i, k)
			if _, err := survivors[k%2].CreateTenant(context.Background(), controlplane.CreateTenantInput{ID: id}); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		gaps = append(gaps, time.Since(killed))
		c.restart(victim)
		c.waitToken(victim)
	}
	reportDurations(b, gaps, "s-failover")
}

// BenchmarkCluster_Registry100k loads 100,000 tenants into a 3-node cluster,
// then measures tenant lookups through a follower's API (as the client sees
// them, and as the node reports them in Server-Timing), a snapshot of the
// registry, and a follower's restart to ready.
func BenchmarkCluster_Registry100k(b *testing.B) {
	const tenants = 100_000
	c := startCluster(b, 3)
	loadTenants(b, c, tenants)
	follower := (c.leader() + 1) % 3
	hc := loopbackClient(c.http[follower])

	// Let the load's background work (Raft snapshots, Badger compactions)
	// finish: the lookups measure a registry at rest.
	time.Sleep(15 * time.Second)

	var lookups, atNode []time.Duration
	for b.Loop() {
		id := fmt.Sprintf("r-%d", rand.IntN(tenants))
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+c.http[follower]+"/api/cp/tenants/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("lookup %s: %s", id, resp.Status)
		}
		lookups = append(lookups, time.Since(start))
		atNode = append(atNode, serverTiming(b, resp))
	}
	reportDurations(b, lookups, "ms-lookup")
	reportDurations(b, atNode, "ms-lookup-at-node")

	start := time.Now()
	if _, err := c.nodeClient(follower).Snapshot(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "s-snapshot")
	b.ReportMetric(float64(snapshotBytes(c.dirs[follower]))/(1<<20), "MiB-snapshot")

	_ = c.procs[follower].stop(syscall.SIGTERM)
	start = time.Now()
	c.restart(follower)
	b.ReportMetric(time.Since(start).Seconds(), "s-restart-to-ready")
}

// loadTenants creates r-0 ... r-(n-1) with 64 concurrent clients.
func loadTenants(b *testing.B, c *cpCluster, n int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.nodeClient(w % 3)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := cl.CreateTenant(context.Background(), controlplane.CreateTenantInput{ID: fmt.Sprintf("r-%d", i)}); err != nil {
					b.Errorf("create r-%d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("loaded %d tenants in %v", n, time.Since(start))
}

// snapshotBytes is the size of the newest snapshot in a node's data dir.
func snapshotBytes(dir string) int64 {
	var newest string
	var size int64
	_ = filepath.WalkDir(filepath.Join(dir, "control-plane", "raft", "snapshots"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "state.bin") && p > newest {
			newest = p
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
		}
		return nil
	})
	return size
}

// reportDurations reports the p50, p99 and max of ds in the unit's scale
// (a unit starting with "ms" reports milliseconds, else seconds).
func reportDurations(b *testing.B, ds []time.Duration, unit string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	scale := time.Second
	if strings.HasPrefix(unit, "ms") {
		scale = time.Millisecond
	}
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) / float64(scale) }
	b.ReportMetric(at(0.5), "p50-"+unit)
	b.ReportMetric(at(0.99), "p99-"+unit)
	b.ReportMetric(float64(ds[len(ds)-1])/float64(scale), "max-"+unit)
}

// serverTiming is the time the control-plane node reports it took to start
// its answer (Server-Timing: cp;dur=ms).
func serverTiming(b *testing.B, resp *http.Response) time.Duration {
	v, ok := strings.CutPrefix(resp.Header.Get("Server-Timing"), "cp;dur=")
	ms, err := strconv.ParseFloat(v, 64)
	if !ok || err != nil {
		b.Fatalf("no Server-Timing in the answer: %q", resp.Header.Get("Server-Timing"))
	}
	return time.Duration(ms * float64(time.Millisecond))
}
