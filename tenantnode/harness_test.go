package tenantnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/storage/file"
)

// registry is the real control-plane store (Badger) driven directly, as the
// control plane drives it after Raft commits: the tenant node's view of
// the registry without a Raft round trip.
type registry struct {
	st    *store.Store
	mu    sync.Mutex
	index uint64
	lease atomic.Int64          // lease granted, in nanoseconds (0: a minute)
	down  atomic.Pointer[error] // when set, heartbeats fail with it
}

func newRegistry(t testing.TB) *registry {
	t.Helper()
	st, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &registry{st: st}
}

func (r *registry) apply(typ string, payload any) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	return r.st.Apply(r.index, store.NewCommand(typ, "", time.Now().UTC(), payload))
}

func (r *registry) create(t *testing.T, id string) {
	t.Helper()
	if _, err := r.apply(store.CmdCreateTenant, store.CreateTenant{Tenant: cluster.Tenant{ID: id, Node: "local", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
}

func (r *registry) Tenant(ctx context.Context, id string) (cluster.Tenant, error) {
	return r.st.Tenant(id)
}

// Assign places an unassigned tenant on node "local".
func (r *registry) Assign(ctx context.Context, id string) (cluster.Tenant, error) {
	t, err := r.st.Tenant(id)
	if err != nil || t.Node != "" {
		return t, err
	}
	node, epoch, from := "local", t.Epoch+1, t.Epoch
	res, err := r.apply(store.CmdUpdateTenant, store.UpdateTenant{ID: id, ExpectedVersion: t.Version, Node: &node, Epoch: &epoch, RestoreEpoch: &from})
	if err != nil {
		return cluster.Tenant{}, err
	}
	return res.(cluster.Tenant), nil
}

func (r *registry) RegisterNode(ctx context.Context, n cluster.Node) (cluster.Node, error) {
	res, err := r.apply(store.CmdRegisterNode, store.RegisterNode{Node: n})
	if err != nil {
		return cluster.Node{}, err
	}
	return res.(cluster.Node), nil
}

// Heartbeat grants the lease the test set (a minute by default) and
// disowns tenants the registry gives to another node or epoch.
func (r *registry) Heartbeat(ctx context.Context, hb cluster.Heartbeat) (cluster.HeartbeatReply, error) {
	if err := r.down.Load(); err != nil {
		return cluster.HeartbeatReply{}, *err
	}
	lease := time.Minute
	if d := r.lease.Load(); d != 0 {
		lease = time.Duration(d)
	}
	reply := cluster.HeartbeatReply{LeaseMillis: lease.Milliseconds(), State: cluster.NodeActive}
	for _, tr := range hb.Tenants {
		if t, err := r.st.Tenant(tr.ID); err != nil || t.Node != hb.Node || t.Epoch != tr.Epoch {
			reply.Disowned = append(reply.Disowned, tr.ID)
		}
	}
	return reply, nil
}

func (r *registry) AdvanceEpoch(ctx context.Context, t cluster.Tenant, node string) (cluster.Tenant, error) {
	epoch, from := t.Epoch+1, t.Epoch
	res, err := r.apply(store.CmdUpdateTenant, store.UpdateTenant{ID: t.ID, ExpectedVersion: t.Version, Node: &node, Epoch: &epoch, RestoreEpoch: &from})
	if err != nil {
		return cluster.Tenant{}, err
	}
	return res.(cluster.Tenant), nil
}

// node is a Manager under test with its directory and object store.
type node struct {
	*Manager
	dir     string
	objects storage.ObjectStore
	reg     *registry
}

func newNode(t testing.TB, reg ControlPlane, objects storage.ObjectStore, mutate func(*Config)) *node {
	t.Helper()
	dir := t.TempDir()
	if objects == nil {
		fs, err := file.New(dir + "/objects")
		if err != nil {
			t.Fatal(err)
		}
		objects = fs
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PBE_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Replication.MonitorInterval = 50 * time.Millisecond
	cfg.Replication.SyncInterval = 50 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := NewManager(cfg, objects, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	n := &node{Manager: m, dir: dir, objects: objects}
	n.reg, _ = reg.(*registry)
	return n
}

// serve sends one request to tenant id through ServeTenant.
func (n *node) serve(t *testing.T, id, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	n.ServeTenant(w, req, id)
	return w
}

// setup creates tenant id with a superuser and a public posts collection.
func (n *node) setup(t *testing.T, id string) {
	t.Helper()
	n.reg.create(t, id)
	if err := n.CreateSuperuser(context.Background(), id, "admin@"+id+".test", "password-"+id); err != nil {
		t.Fatal(err)
	}
	w := n.serve(t, id, "POST", "/api/collections/_superusers/auth-with-password",
		fmt.Sprintf(`{"identity":"admin@%s.test","password":"password-%s"}`, id, id))
	if w.Code != http.StatusOK {
		t.Fatalf("auth: %d %s", w.Code, w.Body)
	}
	tok := strings.Split(strings.Split(w.Body.String(), `"token":"`)[1], `"`)[0]
	w = n.serve(t, id, "POST", "/api/collections",
		`{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"","fields":[{"name":"title","type":"text"}]}`,
		"Authorization", tok)
	if w.Code != http.StatusOK {
		t.Fatalf("create collection: %d %s", w.Code, w.Body)
	}
}

func (n *node) post(t *testing.T, id, title string) {
	t.Helper()
	if w := n.serve(t, id, "POST", "/api/collections/posts/records", `{"title":"`+title+`"}`); w.Code != http.StatusOK {
		t.Fatalf("create post in %s: %d %s", id, w.Code, w.Body)
	}
}

func (n *node) count(t *testing.T, id string) int {
	t.Helper()
	w := n.serve(t, id, "GET", "/api/collections/posts/records", "")
	if w.Code != http.StatusOK {
		t.Fatalf("list posts in %s: %d %s", id, w.Code, w.Body)
	}
	var n2 int
	fmt.Sscanf(strings.Split(w.Body.String(), `"totalItems":`)[1], "%d", &n2)
	return n2
}

// gatedCP blocks Tenant lookups of one tenant until released: a slow
// control plane or object store, for that tenant only.
type gatedCP struct {
	ControlPlane
	id      string
	release chan struct{}
	calls   atomic.Int64
}

func (g *gatedCP) Tenant(ctx context.Context, id string) (cluster.Tenant, error) {
	g.calls.Add(1)
	if id == g.id {
		select {
		case <-g.release:
		case <-ctx.Done():
			return cluster.Tenant{}, ctx.Err()
		}
	}
	return g.ControlPlane.Tenant(ctx, id)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
