package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/controlplane/raft"
)

const (
	testClusterSecret = "cluster-secret-for-tests-0123456789"
	testAdminToken    = "pbe_operator-token-for-cluster-tests"
)

// cpCluster is a control-plane cluster of pbe processes on loopback.
type cpCluster struct {
	extra []string
	t     testing.TB
	ids   []string
	dirs  []string
	http  []string
	raft  []string
	procs []*proc
}

// startCluster starts n control-plane processes, cp-1 to cp-n, that
// bootstrap one cluster.
func startCluster(t testing.TB, n int) *cpCluster {
	return startClusterNamed(t, "cp", n)
}

// startClusterNamed is startCluster with node ids {prefix}-1...
func startClusterNamed(t testing.TB, prefix string, n int) *cpCluster {
	return startClusterWith(t, prefix, n)
}

// startClusterWith is startClusterNamed with extra flags for every node.
func startClusterWith(t testing.TB, prefix string, n int, extra ...string) *cpCluster {
	t.Helper()
	c := &cpCluster{t: t, extra: extra}
	var peers []string
	for i := range n {
		c.ids = append(c.ids, fmt.Sprintf("%s-%d", prefix, i+1))
		c.dirs = append(c.dirs, t.TempDir())
		c.http = append(c.http, freePort(t))
		c.raft = append(c.raft, "127.0.0.1:"+freePort(t))
		peers = append(peers, c.ids[i]+"="+c.raft[i])
	}
	c.procs = make([]*proc, n)
	for i := range n {
		c.procs[i] = c.launch(i, "--raft-peers", strings.Join(peers, ","))
	}
	for i, p := range c.procs {
		p.waitReady()
		c.waitToken(i)
	}
	return c
}

// waitToken waits until node i has applied the initial operator token.
func (c *cpCluster) waitToken(i int) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.nodeClient(i).ListTenants(context.Background(), "all")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s never accepted the operator token: %v", c.ids[i], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// launch starts node i with extra flags.
func (c *cpCluster) launch(i int, extra ...string) *proc {
	args := append([]string{"--mode", "control-plane", "--node-id", c.ids[i], "--raft-bind", c.raft[i]}, append(extra, c.extra...)...)
	return launchProc(c.t, c.dirs[i], c.http[i], args, []string{"PBE_CLUSTER_SECRET=" + testClusterSecret, "PBE_ADMIN_TOKEN=" + testAdminToken})
}

// restart starts node i again with the flags of a bootstrapped member.
func (c *cpCluster) restart(i int) {
	var peers []string
	for j := range c.ids {
		peers = append(peers, c.ids[j]+"="+c.raft[j])
	}
	c.procs[i] = c.launch(i, "--raft-peers", strings.Join(peers, ","))
	c.procs[i].waitReady()
}

// client returns an API client that tries node first, then the others.
func (c *cpCluster) client(first int) *controlplane.HTTPClient {
	var urls []string
	for k := range c.http {
		urls = append(urls, "http://127.0.0.1:"+c.http[(first+k)%len(c.http)])
	}
	return controlplane.NewHTTPClient(strings.Join(urls, ","), testAdminToken)
}

// nodeClient talks to node i only.
func (c *cpCluster) nodeClient(i int) *controlplane.HTTPClient {
	return controlplane.NewHTTPClient("http://127.0.0.1:"+c.http[i], testAdminToken)
}

// leader returns the index of the current leader.
func (c *cpCluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i := range c.procs {
			if c.procs[i] == nil {
				continue
			}
			st, err := c.nodeClient(i).RaftStatus(context.Background())
			if err == nil && st.Role == "leader" {
				return i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return -1
}

// tenantsOn lists the tenants node i has applied (a local read).
func (c *cpCluster) tenantsOn(i int) map[string]string {
	c.t.Helper()
	ts, err := c.nodeClient(i).ListTenants(context.Background(), "all")
	if err != nil {
		c.t.Fatalf("list on %s: %v", c.ids[i], err)
	}
	out := map[string]string{}
	for _, t := range ts {
		out[t.ID] = t.Name
	}
	return out
}

// converged waits until every running node lists the same tenants.
func (c *cpCluster) converged() map[string]string {
	c.t.Helper()
	var first map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		same := true
		first = nil
		for i := range c.procs {
			got := c.tenantsOn(i)
			if first == nil {
				first = got
			} else if !mapsEqual(first, got) {
				same = false
			}
		}
		if same {
			return first
		}
		if time.Now().After(deadline) {
			c.t.Fatal("nodes did not converge to the same state")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Linearizability model: each tenant is a register holding its display
// name, which exists once created.
type regInput struct {
	op, id, name string // op: create, rename, get
}

type regOutput struct {
	result string // ok, exists, notfound, unknown
	name   string
}

type regState struct {
	exists bool
	name   string
}

var tenantModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			id := op.Input.(regInput).id
			by[id] = append(by[id], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(s, in, out any) (bool, any) {
		st, i, o := s.(regState), in.(regInput), out.(regOutput)
		switch i.op {
		case "create":
			if st.exists {
				return o.result == "exists" || o.result == "unknown", st
			}
			return o.result == "ok" || o.result == "unknown", regState{exists: true, name: i.name}
		case "rename":
			if !st.exists {
				return o.result == "notfound" || o.result == "unknown", st
			}
			return o.result == "ok" || o.result == "unknown", regState{exists: true, name: i.name}
		default: // get
			if !st.exists {
				return o.result == "notfound", st
			}
			return o.result == "ok" && o.name == st.name, st
		}
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(regInput), out.(regOutput)
		return fmt.Sprintf("%s(%s,%s) -> %s %s", i.op, i.id, i.name, o.result, o.name)
	},
}

// history records operations from concurrent clients.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(client int, in regInput, call int64, out regOutput) {
	ret := h.now()
	if out.result == "unknown" {
		ret = math.MaxInt64 // may take effect at any time after the call, or never be seen
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// runClient performs random creates, renames and strong reads on a small
// set of tenants until stop is closed.
func runClient(ctx context.Context, h *history, client int, cl *controlplane.HTTPClient, stop <-chan struct{}, acked *sync.Map) {
	rng := rand.New(rand.NewPCG(uint64(client), 7))
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		in := regInput{id: fmt.Sprintf("lin-%d", rng.IntN(6)), name: fmt.Sprintf("c%d-%d", client, k)}
		call := h.now()
		var out regOutput
		switch r := rng.IntN(100); {
		case r < 20:
			in.op = "create"
			_, err := cl.CreateTenant(ctx, controlplane.CreateTenantInput{ID: in.id, Name: in.name})
			out = writeOutcome(err)
			if err == nil {
				acked.Store(in.id, true)
			}
		case r < 60:
			in.op = "rename"
			_, err := cl.UpdateTenant(ctx, in.id, controlplane.UpdateTenantInput{Name: &in.name})
			out = writeOutcome(err)
		default:
			in.op, in.name = "get", ""
			t, err := cl.GetTenantStrong(ctx, in.id)
			switch {
			case err == nil:
				out = regOutput{result: "ok", name: t.Name}
			case errors.Is(err, cluster.ErrTenantNotFound):
				out = regOutput{result: "notfound"}
			default:
				continue // a failed read observed nothing
			}
		}
		h.add(client, in, call, out)
	}
}

func writeOutcome(err error) regOutput {
	switch {
	case err == nil:
		return regOutput{result: "ok"}
	case errors.Is(err, cluster.ErrTenantExists):
		return regOutput{result: "exists"}
	case errors.Is(err, cluster.ErrTenantNotFound):
		return regOutput{result: "notfound"}
	}
	return regOutput{result: "unknown"}
}

func TestCluster_KillLeaderUnderLoadStaysLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	c := startCluster(t, 3)
	h := &history{start: time.Now()}
	stop := make(chan struct{})
	var acked sync.Map
	var wg sync.WaitGroup
	ctx := context.Background()
	for client := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runClient(ctx, h, client, c.client(client%3), stop, &acked)
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	victim := c.leader()
	killedAt := time.Now()
	_ = c.procs[victim].cmd.Process.Kill()
	<-c.procs[victim].exited
	t.Logf("killed leader %s", c.ids[victim])
	c.procs[victim] = nil

	// The survivors elect a leader and writes continue.
	waitForWrite(t, c.client((victim+1)%3))
	t.Logf("first acknowledged write %v after the kill", time.Since(killedAt))
	time.Sleep(1500 * time.Millisecond)
	c.restart(victim)
	time.Sleep(1000 * time.Millisecond)
	close(stop)
	wg.Wait()

	res, info := porcupine.CheckOperationsVerbose(tenantModel, h.ops, 60*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		_ = porcupine.VisualizePath(tenantModel, info, path)
		t.Fatalf("history of %d operations is not linearizable (%s); visualization: %s", len(h.ops), res, path)
	}
	t.Logf("%d operations, linearizable", len(h.ops))

	final := c.converged()
	acked.Range(func(k, _ any) bool {
		if _, ok := final[k.(string)]; !ok {
			t.Errorf("acknowledged create of %s lost", k)
		}
		return true
	})
}

// waitForWrite retries a write until the cluster acknowledges one.
func waitForWrite(t testing.TB, cl *controlplane.HTTPClient) {
	t.Helper()
	id := fmt.Sprintf("probe-%d", time.Now().UnixNano()%1_000_000)
	if _, err := cl.CreateTenant(context.Background(), controlplane.CreateTenantInput{ID: id}); err != nil {
		t.Fatalf("no write acknowledged after the leader died: %v", err)
	}
}

func TestCluster_Membership(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a control-plane cluster")
	}
	c := startCluster(t, 3)
	ctx := context.Background()
	for i := range 5 {
		if _, err := c.client(i%3).CreateTenant(ctx, controlplane.CreateTenantInput{ID: fmt.Sprintf("before-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("followers forward writes and serve local reads", func(t *testing.T) {
		follower := (c.leader() + 1) % 3
		tn, err := c.nodeClient(follower).CreateTenant(ctx, controlplane.CreateTenantInput{ID: "via-follower"})
		if err != nil || tn.ID != "via-follower" {
			t.Fatalf("write through a follower: %+v, %v", tn, err)
		}
		if _, err := c.nodeClient(follower).GetTenantStrong(ctx, "via-follower"); err != nil {
			t.Fatalf("strong read through a follower: %v", err)
		}
	})

	t.Run("pbe cluster status", func(t *testing.T) {
		out := c.procs[0].cli(t, "cluster", "status", "--token", testAdminToken)
		for _, want := range []string{"cp-1", "cp-2", "cp-3", "leader", "term"} {
			if !strings.Contains(out, want) {
				t.Fatalf("cluster status output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("restart all nodes at once", func(t *testing.T) {
		for _, p := range c.procs {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
		for _, p := range c.procs {
			<-p.exited
		}
		for i := range c.procs {
			c.procs[i] = c.launch(i, "--raft-peers", c.peersFlag())
		}
		for _, p := range c.procs {
			p.waitReady()
		}
		got := c.converged()
		for i := range 5 {
			if _, ok := got[fmt.Sprintf("before-%d", i)]; !ok {
				t.Fatalf("tenant before-%d lost after restarting every node", i)
			}
		}
	})

	t.Run("a fourth node joins under load, then a node is removed", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = c.client(k%3).CreateTenant(ctx, controlplane.CreateTenantInput{ID: fmt.Sprintf("load-%d", k)})
			}
		}()
		c.ids = append(c.ids, "cp-4")
		c.dirs = append(c.dirs, t.TempDir())
		c.http = append(c.http, freePort(t))
		c.raft = append(c.raft, "127.0.0.1:"+freePort(t))
		c.procs = append(c.procs, c.launch(3, "--join", "http://127.0.0.1:"+c.http[0]))
		c.procs[3].waitReady()
		c.waitToken(3)
		close(stop)
		wg.Wait()
		st, err := c.nodeClient(3).RaftStatus(ctx)
		if err != nil || len(st.Peers) != 4 {
			t.Fatalf("after join: %d peers, %v", len(st.Peers), err)
		}
		c.converged()

		if err := c.client(0).RemoveNode(ctx, "cp-4"); err != nil {
			t.Fatal(err)
		}
		_ = c.procs[3].stop(syscall.SIGTERM)
		c.procs, c.ids = c.procs[:3], c.ids[:3]
		st, err = c.client(0).RaftStatus(ctx)
		if err != nil || len(st.Peers) != 3 {
			t.Fatalf("after remove: %+v, %v", st.Peers, err)
		}
		if _, err := c.client(1).CreateTenant(ctx, controlplane.CreateTenantInput{ID: "after-remove"}); err != nil {
			t.Fatalf("write after removing a node: %v", err)
		}
	})

	t.Run("without a quorum writes fail fast with 503", func(t *testing.T) {
		for _, i := range []int{1, 2} {
			_ = c.procs[i].stop(syscall.SIGTERM)
		}
		start := time.Now()
		r := loopbackClient(c.http[0])
		req, _ := http.NewRequest("POST", "http://127.0.0.1:"+c.http[0]+"/api/cp/tenants", strings.NewReader(`{"id":"no-quorum"}`))
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := r.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("got %d, want 503 with Retry-After", resp.StatusCode)
		}
		t.Logf("refused in %v", time.Since(start))
		for _, i := range []int{1, 2} {
			c.restart(i)
		}
		waitForWrite(t, c.client(0))
	})

	t.Run("a node of another cluster is refused", func(t *testing.T) {
		other := startClusterNamed(t, "other", 1)
		err := c.client(0).Join(ctx, controlplane.JoinRequest{ID: "other-1", RaftAddr: other.raft[0], APIAddr: "127.0.0.1:" + other.http[0]})
		if !errors.Is(err, cluster.ErrClusterMismatch) {
			t.Fatalf("got %v, want cluster_mismatch", err)
		}
		st, _ := c.client(0).RaftStatus(ctx)
		if slices.ContainsFunc(st.Peers, func(p raft.PeerStatus) bool { return p.ID == "other-1" }) {
			t.Fatal("the foreign node was added")
		}
	})
}

func (c *cpCluster) peersFlag() string {
	var peers []string
	for j := range c.ids {
		peers = append(peers, c.ids[j]+"="+c.raft[j])
	}
	return strings.Join(peers, ",")
}

func TestCluster_ClientFindsTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	c := startCluster(t, 3)
	leader := c.leader()
	base := func(i int) string { return "http://127.0.0.1:" + c.http[i] }
	// Followers first: the first call is forwarded, its answer names the
	// leader, and the client starts there from then on.
	order := []int{(leader + 1) % 3, (leader + 2) % 3, leader}
	var bases []string
	for _, i := range order {
		bases = append(bases, base(i))
	}
	cl := controlplane.NewHTTPClient(strings.Join(bases, ","), testAdminToken)
	ctx := context.Background()
	if _, err := cl.CreateTenant(ctx, controlplane.CreateTenantInput{ID: "first"}); err != nil {
		t.Fatal(err)
	}
	if got := cl.Preferred(); got != base(leader) {
		t.Fatalf("after a write through a follower the client prefers %s, want the leader %s", got, base(leader))
	}
	// Every answer says how long the node took (Server-Timing), and the
	// leader's say where it is.
	for _, i := range order {
		req, _ := http.NewRequest("GET", base(i)+"/api/cp/tenants/first", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := loopbackClient(c.http[i]).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if st := resp.Header.Get("Server-Timing"); !strings.HasPrefix(st, "cp;dur=") {
			t.Errorf("node %s: Server-Timing %q", c.ids[i], st)
		}
		if got, want := resp.Header.Get(controlplane.LeaderHeader) != "", i == leader; got != want {
			t.Errorf("node %s: %s header present %v, want %v", c.ids[i], controlplane.LeaderHeader, got, want)
		}
	}

	// The leader dies: the client fails over, and finds the new leader.
	_ = c.procs[leader].cmd.Process.Kill()
	<-c.procs[leader].exited
	c.procs[leader] = nil
	if _, err := cl.CreateTenant(ctx, controlplane.CreateTenantInput{ID: "second"}); err != nil {
		t.Fatalf("write after the leader died: %v", err)
	}
	if _, err := cl.CreateTenant(ctx, controlplane.CreateTenantInput{ID: "third"}); err != nil {
		t.Fatal(err)
	}
	if got, want := cl.Preferred(), base(c.leader()); got != want {
		t.Fatalf("after the failover the client prefers %s, want the new leader %s", got, want)
	}
}
