package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/health"
	"github.com/pbe/pbe/internal/s3test"
	"github.com/pbe/pbe/storage"
)

// fleet is a control plane, tenant nodes and a gateway, each its own pbe
// process, sharing a real S3-compatible store (versitygw) on loopback.
type fleet struct {
	t        testing.TB
	s3       *s3test.Server
	objects  string
	cp       *proc
	cpAddr   string // every control-plane node's API address, comma-separated
	cps      *cpCluster
	nodes    map[string]*proc
	nodeDir  map[string]string
	nodePort map[string]string
	gw       *proc
	gwPort   string
	api      *controlplane.HTTPClient
	lease    time.Duration
}

// fleetLease is the lease the fleet's control plane grants: short, so
// failovers happen within a test.
const fleetLease = 3 * time.Second

var fleetEnv = []string{"PBE_CLUSTER_SECRET=" + testClusterSecret, "PBE_ADMIN_TOKEN=" + testAdminToken}

func startFleet(t testing.TB, nodes ...string) *fleet {
	return startFleetCP(t, 1, nodes...)
}

// startFleetCP is startFleet with a control plane of cps nodes.
func startFleetCP(t testing.TB, cps int, nodes ...string) *fleet {
	return startFleetLease(t, cps, fleetLease, nodes...)
}

// startFleetLease is startFleetCP with the control plane granting lease.
func startFleetLease(t testing.TB, cps int, lease time.Duration, nodes ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, s3: s3test.Start(t), nodes: map[string]*proc{}, nodeDir: map[string]string{}, nodePort: map[string]string{}, lease: lease}
	f.objects = f.s3.URL(t, "pbe")
	f.cps = startClusterWith(t, "cp", cps, "--objects", f.objects, "--lease", lease.String())
	var addrs []string
	for _, port := range f.cps.http {
		addrs = append(addrs, "127.0.0.1:"+port)
	}
	f.cpAddr = strings.Join(addrs, ",")
	f.cp = f.cps.procs[0]
	f.api = controlplane.NewHTTPClient(f.cpAddr, testAdminToken)
	for _, id := range nodes {
		f.startNode(id)
	}
	f.gwPort = freePort(t)
	f.gw = launchProc(t, t.TempDir(), f.gwPort, []string{"--mode", "gateway", "--control-plane", f.cpAddr, "--domain", "localhost"}, fleetEnv)
	f.gw.waitReady()
	return f
}

// startNode starts (or restarts, on its old data directory) tenant node id.
func (f *fleet) startNode(id string) *proc {
	f.t.Helper()
	if f.nodeDir[id] == "" {
		f.nodeDir[id], f.nodePort[id] = f.t.TempDir(), freePort(f.t)
	}
	p := launchProc(f.t, f.nodeDir[id], f.nodePort[id], []string{"--mode", "tenant-node", "--node-id", id,
		"--control-plane", f.cpAddr, "--objects", f.objects, "--replication-interval", "100ms", "--domain", "localhost"}, fleetEnv)
	p.waitReady()
	f.nodes[id] = p
	return p
}

// gateway is a test client that talks to tenants through the gateway.
func (f *fleet) gateway() *testServer {
	return &testServer{t: f.t, port: f.gwPort, token: testAdminToken, client: loopbackClient(f.gwPort)}
}

// owner returns the node that serves tenant id now.
func (f *fleet) owner(id string) string {
	f.t.Helper()
	tn, err := f.api.GetTenantStrong(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return tn.Node
}

// createTenant creates a tenant with an admin and a posts collection.
func (f *fleet) createTenant(id, durability string) {
	f.t.Helper()
	_, err := f.api.CreateTenant(context.Background(), controlplane.CreateTenantInput{
		ID: id, Durability: clusterDurability(durability),
		Admin: &controlplane.Admin{Email: "admin@" + id + ".test", Password: "password-" + id},
	})
	if err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
	g := f.gateway()
	g.createPostsCollection(id, g.superuserToken(id))
}

func TestFleet_Smoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	g.createPost("acme", "through the gateway")
	if got := g.postTitles("acme"); len(got) != 1 || got[0] != "through the gateway" {
		t.Fatalf("got %v", got)
	}
	mustStatus(t, g.do("GET", g.tenantURL("nosuch", "/api/health"), nil), http.StatusNotFound)
	views, err := f.api.Nodes(context.Background())
	if err != nil || len(views) != 2 {
		t.Fatalf("nodes: %+v, %v", views, err)
	}
	for _, v := range views {
		if !v.Alive || v.State != "active" {
			t.Fatalf("node %s: %+v", v.ID, v)
		}
	}
	// The fleet's health, as the control plane sees it, through the gateway.
	r := g.do("GET", "http://localhost:"+f.gwPort+"/api/cp/health", nil, "Authorization", "Bearer "+testAdminToken)
	mustStatus(t, r, http.StatusOK)
	var health controlplane.FleetHealth
	r.json(t, &health)
	if health.Status != "ok" || len(health.Nodes) != 2 || health.Summary["alive"] != 2 || health.ControlPlane.Leader != "cp-1" ||
		health.Checks["object_store"] != "ok" || health.Nodes[0].LastHeartbeat == nil {
		t.Fatalf("fleet health: %s", r.body)
	}

	t.Run("every node's registration is a node.joined event", func(t *testing.T) {
		for id, port := range f.nodePort {
			e := g.waitEvent("node.joined", func(e cluster.Event) bool { return e.Node == id })
			if e.Data["addr"] != "127.0.0.1:"+port {
				t.Errorf("%s joined with %+v, want its address 127.0.0.1:%s", id, e.Data, port)
			}
		}
	})

	t.Run("a tenant node's readiness names its checks", func(t *testing.T) {
		for id, port := range f.nodePort {
			status, rep := readyz(t, port)
			if status != http.StatusOK || rep.Status != "ok" {
				t.Fatalf("%s: got %d %+v, want 200 ok", id, status, rep)
			}
			for _, check := range []string{"control_plane", "disk", "object_store", "tenant_node"} {
				if got := rep.Checks[check]; got.Status != "ok" {
					t.Errorf("%s: check %s got %+v, want ok", id, check, got)
				}
			}
		}
	})

	// A change of durability is a registry write, then an order to the
	// node serving the tenant, which applies it to the next write.
	sync := cluster.DurabilitySync
	tn, err := f.api.UpdateTenant(context.Background(), "acme", controlplane.UpdateTenantInput{Durability: &sync})
	if err != nil || tn.Durability != sync {
		t.Fatalf("update durability: %+v, %v", tn, err)
	}
	order := func(secret, body string) response {
		req, _ := http.NewRequest("POST", "http://127.0.0.1:"+f.nodePort[tn.Node]+"/internal/tenants/acme/update", strings.NewReader(body))
		req.Header.Set(cluster.HeaderSecret, secret)
		resp, err := loopbackClient(f.nodePort[tn.Node]).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b}
	}
	r = order(testClusterSecret, fmt.Sprintf(`{"id":"acme","state":"active","epoch":%d,"durability":"sync"}`, tn.Epoch))
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"changed":true`) {
		t.Fatalf("the active tenant did not take the update order: %s", r.body)
	}
	mustStatus(t, order("wrong-secret", `{"id":"acme","epoch":1,"durability":"async"}`), http.StatusUnauthorized)
	mustStatus(t, order(testClusterSecret, `{"id":"acme","epoch":1,"durability":"eventually"}`), http.StatusBadRequest)
	mustStatus(t, order(testClusterSecret, `{"id":"other","epoch":1,"durability":"async"}`), http.StatusBadRequest)
	g.createPost("acme", "durable now")

	t.Run("without the control plane the gateway and the nodes are not ready", func(t *testing.T) {
		for _, p := range f.cps.procs {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		waitNotReady(t, f.gwPort, "route_feed", "no fresh route feed")
		for _, port := range f.nodePort {
			waitNotReady(t, port, "control_plane", "no lease")
		}
	})
}

// readyz returns the answer of GET /readyz on the process at port.
func readyz(t testing.TB, port string) (int, health.Report) {
	t.Helper()
	s := &testServer{t: t, port: port, client: loopbackClient(port)}
	r := s.do("GET", "http://127.0.0.1:"+port+"/readyz", nil)
	var rep health.Report
	r.json(t, &rep)
	return r.status, rep
}

// waitNotReady waits (bounded) until the process at port answers /readyz
// with 503 and its check fails with an error containing want.
func waitNotReady(t testing.TB, port, check, want string) {
	t.Helper()
	var status int
	var rep health.Report
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, rep = readyz(t, port)
		got := rep.Checks[check]
		if status == http.StatusServiceUnavailable && rep.Status == "fail" && got.Status == "fail" && strings.Contains(got.Error, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz on port %s: got %d %+v, want 503 with check %s failing with %q", port, status, rep, check, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clusterDurability(s string) cluster.Durability { return cluster.Durability(s) }

// load runs clients that write posts to a tenant through the gateway (and
// read them back) until stopped, recording every acknowledged write and
// every failed request.
type load struct {
	mu       sync.Mutex
	acked    []ackedWrite
	failures []string
	maxWait  time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(g *testServer, tenant string, clients int, withReads bool) *load {
	l := &load{stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if withReads && i%2 == 1 {
					l.do(g, "GET", g.tenantURL(tenant, "/api/collections/posts/records?perPage=1"), "", "")
					continue
				}
				title := fmt.Sprintf("c%d-%d", c, i)
				l.do(g, "POST", g.tenantURL(tenant, "/api/collections/posts/records"), `{"title":"`+title+`"}`, title)
			}
		}()
	}
	return l
}

func (l *load) do(g *testServer, method, url, body, title string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if took > l.maxWait {
		l.maxWait = took
	}
	if err != nil {
		l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", method, url, err))
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		l.failures = append(l.failures, fmt.Sprintf("%s %s: %d %s", method, url, resp.StatusCode, b))
		return
	}
	if title != "" {
		l.acked = append(l.acked, ackedWrite{title: title, at: time.Now()})
	}
}

// finish stops the clients and returns what they recorded.
func (l *load) finish() ([]ackedWrite, []string, time.Duration) {
	close(l.stop)
	l.wg.Wait()
	return l.acked, l.failures, l.maxWait
}

// missing returns the acknowledged writes the tenant does not have.
func missing(g *testServer, tenant string, acked []ackedWrite) []ackedWrite {
	have := titleSet(g, tenant)
	var out []ackedWrite
	for _, w := range acked {
		if !have[w.title] {
			out = append(out, w)
		}
	}
	return out
}

// kill stops tenant node id with SIGKILL.
func (f *fleet) kill(id string) time.Time {
	p := f.nodes[id]
	_ = p.cmd.Process.Kill()
	<-p.exited
	delete(f.nodes, id)
	return time.Now()
}

func TestFleet_FailoverLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("durable", "sync")
	f.createTenant("lazy", "async")
	g := f.gateway()
	payload := bytes.Repeat([]byte{0xAB, 0x01, 0x7F}, 20000)
	filePath := g.uploadFile("durable", g.superuserToken("durable"), payload)

	// Put both tenants on the node that will die.
	victim := f.owner("durable")
	if f.owner("lazy") != victim {
		if _, err := f.api.MoveTenant(context.Background(), "lazy", victim); err != nil {
			t.Fatal(err)
		}
	}
	ld, ll := startLoad(g, "durable", 4, false), startLoad(g, "lazy", 4, false)
	time.Sleep(1500 * time.Millisecond)
	killedAt := f.kill(victim)
	t.Logf("killed %s", victim)
	time.Sleep(500 * time.Millisecond)
	ackedD, _, waitD := ld.finish()
	ackedL, _, _ := ll.finish()

	if got := f.owner("durable"); got == victim {
		t.Fatalf("durable still on the dead node %s", got)
	}
	g.waitEvent("node.down", func(e cluster.Event) bool { return e.Node == victim })
	t.Run("sync: every acknowledged write survives", func(t *testing.T) {
		if lost := missing(g, "durable", ackedD); len(lost) > 0 {
			t.Fatalf("%d of %d acknowledged writes lost, e.g. %q", len(lost), len(ackedD), lost[0].title)
		}
		t.Logf("%d acknowledged writes, all present; longest request %v", len(ackedD), waitD)
	})
	t.Run("async: loss bounded by the replication lag", func(t *testing.T) {
		var window time.Duration
		for _, w := range missing(g, "lazy", ackedL) {
			window = max(window, killedAt.Sub(w.at))
		}
		t.Logf("%d acknowledged writes; oldest lost one was acknowledged %v before the kill", len(ackedL), window)
		if window > 3*time.Second {
			t.Fatalf("lost a write acknowledged %v before the node died", window)
		}
	})
	t.Run("uploaded file survives the failover byte-identical", func(t *testing.T) {
		r := g.do("GET", g.tenantURL("durable", filePath), nil)
		mustStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.body, payload) {
			t.Fatalf("file changed: got %d bytes, want %d", len(r.body), len(payload))
		}
	})
}

func TestFleet_PausedNodeServesAndWritesNothingAfterItsTenantMoved(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	g.createPost("acme", "before the pause")
	f.waitReplicated("acme")
	victim := f.owner("acme")
	before, err := f.api.GetTenantStrong(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	oldPrefix := fmt.Sprintf("tenants/acme/litestream/%d/", before.Epoch)

	p := f.nodes[victim]
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal stops the process's threads one by one: until the last
	// one stops, the node may still answer.
	waitFor(t, "the paused node's threads to stop", func() bool { return stopped(p.cmd.Process.Pid) })
	// Writes through the gateway are held until the tenant fails over.
	g.createPost("acme", "while the old owner is paused")
	after, _ := f.api.GetTenantStrong(context.Background(), "acme")
	if after.Node == victim || after.Epoch <= before.Epoch {
		t.Fatalf("tenant did not move off the paused node: %+v", after.Tenant)
	}
	objects := f.objectKeys(oldPrefix)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * fleetHeartbeat)

	t.Run("the woken node refuses the tenant", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+f.nodePort[victim]+"/api/collections/posts/records", nil)
		req.Host = "acme.localhost"
		req.Header.Set(cluster.HeaderSecret, testClusterSecret)
		req.Header.Set(cluster.HeaderTenant, "acme")
		req.Header.Set(cluster.HeaderEpoch, fmt.Sprint(before.Epoch))
		resp, err := loopbackClient(f.nodePort[victim]).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(cluster.HeaderError) == "" {
			t.Fatalf("the old owner answered %d (%s), want a 503 refusal", resp.StatusCode, resp.Header.Get(cluster.HeaderError))
		}
	})
	t.Run("nothing more was written to the old epoch's replica", func(t *testing.T) {
		if got := f.objectKeys(oldPrefix); !slices.Equal(got, objects) {
			t.Fatalf("the paused node wrote to %s after waking: %d objects before, %d after", oldPrefix, len(objects), len(got))
		}
	})
	t.Run("the new owner holds everything", func(t *testing.T) {
		assertTitles(t, g, "acme", []string{"before the pause", "while the old owner is paused"})
	})
}

// fleetHeartbeat is the nodes' lease renewal interval.
const fleetHeartbeat = time.Second

// objectKeys lists the fleet's object store under prefix.
func (f *fleet) objectKeys(prefix string) []string {
	f.t.Helper()
	s, err := storage.Open(context.Background(), f.objects)
	if err != nil {
		f.t.Fatal(err)
	}
	keys, err := s.List(context.Background(), prefix)
	if err != nil {
		f.t.Fatal(err)
	}
	return keys
}

func TestFleet_MoveUnderLoadFailsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	l := startLoad(g, "acme", 16, true)
	time.Sleep(time.Second)
	from := f.owner("acme")
	moved, err := f.api.MoveTenant(context.Background(), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	acked, failures, maxWait := l.finish()
	if moved.Node == from {
		t.Fatalf("tenant still on %s", from)
	}
	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the move, e.g. %s", len(failures), failures[0])
	}
	if lost := missing(g, "acme", acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost in the move", len(lost))
	}
	t.Logf("moved %s -> %s under 16 clients: %d writes, none failed or lost; longest request %v", from, moved.Node, len(acked), maxWait)
}

func TestFleet_DrainUnderLoadFailsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2", "tn-3")
	for _, id := range []string{"alpha", "bravo", "charlie"} {
		f.createTenant(id, "async")
	}
	g := f.gateway()
	victim := f.owner("alpha")
	var loads []*load
	for _, id := range []string{"alpha", "bravo", "charlie"} {
		loads = append(loads, startLoad(g, id, 4, true))
	}
	time.Sleep(time.Second)
	if err := f.api.DrainNode(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drain", func() bool {
		n, err := f.api.Node(context.Background(), victim)
		return err == nil && n.Assigned == 0
	})
	time.Sleep(500 * time.Millisecond)
	for i, id := range []string{"alpha", "bravo", "charlie"} {
		acked, failures, _ := loads[i].finish()
		if len(failures) > 0 {
			t.Fatalf("%s: %d requests failed during the drain, e.g. %s", id, len(failures), failures[0])
		}
		if lost := missing(g, id, acked); len(lost) > 0 {
			t.Fatalf("%s: %d acknowledged writes lost", id, len(lost))
		}
		if f.owner(id) == victim {
			t.Fatalf("%s still on the drained node", id)
		}
	}
	n, _ := f.api.Node(context.Background(), victim)
	if n.State != cluster.NodeDraining {
		t.Fatalf("drained node is %s", n.State)
	}
	g.waitEvent("node.draining", func(e cluster.Event) bool { return e.Node == victim })
	g.waitEvent("node.drained", func(e cluster.Event) bool { return e.Node == victim })
	for _, e := range g.events("node.draining") {
		if e.Node != victim {
			t.Errorf("node %s is draining in the event log, want only %s", e.Node, victim)
		}
	}
	// A draining node is not ready for new tenants, and says which check
	// fails; the others still pass.
	waitNotReady(t, f.nodePort[victim], "tenant_node", "draining")
	_, rep := readyz(t, f.nodePort[victim])
	for _, check := range []string{"control_plane", "disk", "object_store"} {
		if got := rep.Checks[check]; got.Status != "ok" {
			t.Errorf("draining node: check %s got %+v, want ok", check, got)
		}
	}
}

func TestFleet_ObjectStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1")
	f.createTenant("acme", "async")
	g := f.gateway()
	l := startLoad(g, "acme", 2, true)
	time.Sleep(500 * time.Millisecond)
	f.s3.Stop()
	time.Sleep(2 * time.Second)
	acked, failures, _ := l.finish()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed while the object store was down, e.g. %s", len(failures), failures[0])
	}
	t.Run("a tenant that is not local cannot start empty", func(t *testing.T) {
		_, err := f.api.CreateTenant(context.Background(), controlplane.CreateTenantInput{ID: "newcomer"})
		if err != nil {
			t.Fatal(err)
		}
		r := g.do("GET", g.tenantURL("newcomer", "/api/health"), nil)
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("got %d %s, want 503 while the store is down", r.status, r.body)
		}
	})
	// Past LagEventSeconds behind, the tenant's lag is an event; once the
	// store is back and replication catches up, so is the recovery.
	g.waitEvent("replication.lagging", func(e cluster.Event) bool { return e.Tenant == "acme" })
	f.s3.Restart()
	f.waitReplicated("acme")
	g.waitEvent("replication.recovered", func(e cluster.Event) bool { return e.Tenant == "acme" })
	if lost := missing(g, "acme", acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost across the outage", len(lost))
	}
	t.Logf("%d writes acknowledged while the store was down; replication caught up", len(acked))
}

func TestFleet_CustomDomainThroughTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1")
	f.createTenant("acme", "async")
	g := f.gateway()
	g.createPost("acme", "hello")
	if _, err := f.api.SetDomains(context.Background(), "acme", []string{"shop.example.test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gateway to learn the domain", func() bool {
		r := g.do("GET", "http://shop.example.test:"+f.gwPort+"/api/collections/posts/records", nil, "Host", "shop.example.test:"+f.gwPort)
		return r.status == http.StatusOK && strings.Contains(string(r.body), "hello")
	})
	checkError(t, g.do("GET", "http://other.example.test:"+f.gwPort+"/api/health", nil, "Host", "other.example.test:"+f.gwPort), http.StatusNotFound, "tenant_not_found")
	t.Run("internal control-plane routes are not public", func(t *testing.T) {
		r := g.do("GET", "http://localhost:"+f.gwPort+"/api/cp/internal/watch", nil, "Authorization", "Bearer "+testClusterSecret)
		mustStatus(t, r, http.StatusNotFound)
	})
	t.Run("the platform API works through the gateway", func(t *testing.T) {
		mustStatus(t, g.do("GET", "http://localhost:"+f.gwPort+"/api/cp/tenants/acme", nil, "Authorization", "Bearer "+testAdminToken), http.StatusOK)
	})
}

func TestFleet_SigtermDrainsTheNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	victim := f.owner("acme")
	l := startLoad(g, "acme", 8, true)
	time.Sleep(time.Second)
	if err := f.nodes[victim].stop(syscall.SIGTERM); err != nil {
		t.Fatalf("node did not exit cleanly: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	acked, failures, maxWait := l.finish()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed while the node drained, e.g. %s", len(failures), failures[0])
	}
	if owner := f.owner("acme"); owner == victim {
		t.Fatalf("tenant still assigned to the stopped node")
	}
	if lost := missing(g, "acme", acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost", len(lost))
	}
	t.Logf("drained by SIGTERM under load: %d writes, longest request %v", len(acked), maxWait)
}

func TestFleet_RebalanceOntoANewNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1")
	ids := []string{"aa1", "aa2", "aa3", "aa4"}
	for _, id := range ids {
		f.createTenant(id, "async")
	}
	f.startNode("tn-2")
	r := f.gateway().do("POST", "http://localhost:"+f.gwPort+"/api/cp/rebalance", `{}`, "Authorization", "Bearer "+testAdminToken, "Content-Type", "application/json")
	mustStatus(t, r, http.StatusAccepted)
	waitFor(t, "two tenants to move", func() bool {
		n := 0
		for _, id := range ids {
			if f.owner(id) == "tn-2" {
				n++
			}
		}
		return n == 2
	})
	for _, id := range ids {
		mustStatus(t, f.gateway().do("GET", f.gateway().tenantURL(id, "/api/collections/posts/records"), nil), http.StatusOK)
	}
}

func TestFleet_SurvivesLosingTheControlPlaneLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleetCP(t, 3, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	before := f.owner("acme")
	l := startLoad(g, "acme", 4, true)
	leader := f.cps.leader()
	_ = f.cps.procs[leader].cmd.Process.Kill()
	<-f.cps.procs[leader].exited
	f.cps.procs[leader] = nil
	time.Sleep(2 * fleetLease) // longer than a lease: nodes must renew through the new leader
	acked, failures, _ := l.finish()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed after the control-plane leader died, e.g. %s", len(failures), failures[0])
	}
	if lost := missing(g, "acme", acked); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost", len(lost))
	}
	if after := f.owner("acme"); after != before {
		t.Fatalf("tenant failed over (%s -> %s): its node should have kept its lease", before, after)
	}
	f.createTenant("newcomer", "async")
	g.createPost("newcomer", "after the leader died")
}

// stopped reports whether every thread of process pid is stopped.
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		// The state follows the command, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
