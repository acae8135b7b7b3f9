package raft

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// The store is the state machine these tests drive.
var _ StateMachine = (*store.Store)(nil)
var _ CommandChecker = (*store.Store)(nil)

// waitTimeout bounds every wait for the cluster to reach a state.
const waitTimeout = 15 * time.Second

// testSecret is the cluster secret of every test node that does not test
// the secret itself.
const testSecret = "test-cluster-secret-0123456789abcdef"

var testTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// logBuffer collects a node's logs; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// countingSM counts the entries the store really applies (index above its
// applied index), to show that a restart does not apply anything twice.
type countingSM struct {
	*store.Store
	applied atomic.Int64
}

func (c *countingSM) Apply(index uint64, data []byte) (any, error) {
	if index > c.AppliedIndex() {
		c.applied.Add(1)
	}
	return c.Store.Apply(index, data)
}

func (c *countingSM) ApplyBatch(indexes []uint64, data [][]byte) ([]any, []error) {
	for _, index := range indexes {
		if index > c.AppliedIndex() {
			c.applied.Add(1)
		}
	}
	return c.Store.ApplyBatch(indexes, data)
}

// testNode is one node of a test cluster with its own store and logs.
type testNode struct {
	t    *testing.T
	cfg  Config
	sm   *countingSM
	node *Node
	logs *logBuffer
}

func testConfig(t *testing.T, id, dir string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Dir = dir
	cfg.ClusterSecret = testSecret
	return cfg
}

// startNode opens a store in cfg.Dir/store and starts a node on it.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	tn := &testNode{t: t, cfg: cfg}
	if err := tn.start(); err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(tn.stop)
	return tn
}

// start opens the store and the node; on error the store is closed.
func (tn *testNode) start() error {
	tn.logs = &logBuffer{}
	logger := slog.New(slog.NewTextHandler(tn.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(filepath.Join(tn.cfg.Dir, "store"), logger)
	if err != nil {
		return err
	}
	tn.sm = &countingSM{Store: st}
	tn.node, err = New(tn.cfg, tn.sm, logger)
	if err != nil {
		_ = st.Close()
		tn.sm, tn.node = nil, nil
		return err
	}
	return nil
}

// stop stops the node and closes its store; it may be called twice.
func (tn *testNode) stop() {
	if tn.node != nil {
		if err := tn.node.Stop(); err != nil {
			tn.t.Errorf("Stop %s: %v", tn.cfg.NodeID, err)
		}
		if tn.t.Failed() {
			tn.t.Logf("logs of %s:\n%s", tn.cfg.NodeID, tn.logs)
		}
	}
	if tn.sm != nil {
		_ = tn.sm.Close()
	}
	tn.node, tn.sm = nil, nil
}

// restart stops the node and starts it again with the same config.
func (tn *testNode) restart() {
	tn.t.Helper()
	tn.stop()
	if err := tn.start(); err != nil {
		tn.t.Fatalf("restart %s: %v", tn.cfg.NodeID, err)
	}
}

func (tn *testNode) waitLeader() {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tn.node.WaitForLeader(ctx); err != nil {
		tn.t.Fatalf("%s: %v", tn.cfg.NodeID, err)
	}
}

func (tn *testNode) apply(cmd []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return tn.node.Apply(ctx, cmd)
}

func createTenantCmd(id, rid string) []byte {
	return store.NewCommand(store.CmdCreateTenant, rid, testTime, store.CreateTenant{Tenant: cluster.Tenant{ID: id}})
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddrs returns n loopback addresses whose ports were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return addrs
}

// tenantIDs returns the ids of the tenants in tn's store.
func tenantIDs(t *testing.T, tn *testNode) []string {
	t.Helper()
	tenants, err := tn.sm.Tenants(store.TenantFilter{})
	if err != nil {
		t.Fatalf("Tenants: %v", err)
	}
	ids := []string{}
	for _, tenant := range tenants {
		ids = append(ids, tenant.ID)
	}
	return ids
}
