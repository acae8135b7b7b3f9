package raft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

func TestNode_SingleInmem(t *testing.T) {
	tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
	tn.waitLeader()
	eventually(t, "leadership", tn.node.IsLeader)

	t.Run("Apply returns the state machine's result", func(t *testing.T) {
		res, err := tn.apply(createTenantCmd("acme", "req-1"))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		got, ok := res.(cluster.Tenant)
		if !ok || got.ID != "acme" || got.State != cluster.TenantActive {
			t.Fatalf("result: got %#v, want the active tenant acme", res)
		}
		if ids := tenantIDs(t, tn); !slices.Equal(ids, []string{"acme"}) {
			t.Errorf("tenants: got %v, want [acme]", ids)
		}
	})
	t.Run("Apply returns the command's own error", func(t *testing.T) {
		_, err := tn.apply(createTenantCmd("acme", ""))
		if !errors.Is(err, cluster.ErrTenantExists) {
			t.Fatalf("Apply duplicate: got %v, want ErrTenantExists", err)
		}
	})
	t.Run("retry with the same request id returns the first result", func(t *testing.T) {
		res, err := tn.apply(createTenantCmd("acme", "req-1"))
		if err != nil || res.(cluster.Tenant).ID != "acme" {
			t.Fatalf("retry: got %v, %v; want the first result", res, err)
		}
	})
	t.Run("a command the store cannot decode is not proposed", func(t *testing.T) {
		before := tn.node.Status().LastIndex
		_, err := tn.apply([]byte(`{"type":"drop_everything","v":1}`))
		if !errors.Is(err, cluster.ErrInvalidInput) {
			t.Fatalf("Apply: got %v, want ErrInvalidInput", err)
		}
		if after := tn.node.Status().LastIndex; after != before {
			t.Errorf("last index: got %d, want %d (nothing proposed)", after, before)
		}
	})
	t.Run("Barrier", func(t *testing.T) {
		if err := tn.node.Barrier(context.Background()); err != nil {
			t.Fatalf("Barrier: %v", err)
		}
	})
	t.Run("cluster id is set and persisted", func(t *testing.T) {
		eventually(t, "cluster id", func() bool { return tn.node.ClusterID() != "" })
		b, err := os.ReadFile(filepath.Join(tn.cfg.Dir, clusterIDFile))
		if err != nil || strings.TrimSpace(string(b)) != tn.node.ClusterID() {
			t.Errorf("cluster-id file: got %q, %v; want %q", b, err, tn.node.ClusterID())
		}
	})
	t.Run("Status", func(t *testing.T) {
		st := tn.node.Status()
		want := []PeerStatus{{ID: "cp1", Addr: "inmem:cp1", Suffrage: "voter"}}
		if st.Role != "leader" || st.LeaderID != "cp1" || st.NodeID != "cp1" || !slices.Equal(st.Peers, want) ||
			st.AppliedIndex == 0 || st.CommitIndex == 0 || st.Term == 0 || st.ClusterID == "" {
			t.Errorf("Status: got %+v", st)
		}
	})
	t.Run("calls after Stop", func(t *testing.T) {
		n := tn.node
		tn.stop()
		if err := n.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if _, err := n.Apply(context.Background(), createTenantCmd("beta", "")); !errors.Is(err, cluster.ErrShuttingDown) {
			t.Errorf("Apply after Stop: got %v, want ErrShuttingDown", err)
		}
		if st := n.Status(); st.Role != "shutdown" {
			t.Errorf("role after Stop: got %q, want shutdown", st.Role)
		}
	})
}

func TestNode_ApplyContext(t *testing.T) {
	tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
	tn.waitLeader()
	eventually(t, "leadership", tn.node.IsLeader)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tn.node.Apply(ctx, createTenantCmd("acme", "")); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: got %v, want context.Canceled", err)
	}
	if ids := tenantIDs(t, tn); len(ids) != 0 {
		t.Errorf("tenants: got %v, want none", ids)
	}
}

// TestNode_Restart restarts a node on the same directory: no second
// bootstrap, state intact, nothing applied twice.
func TestNode_Restart(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		name := "log replay"
		if withSnapshot {
			name = "snapshot restore and log replay"
		}
		t.Run(name, func(t *testing.T) {
			tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
			tn.waitLeader()
			eventually(t, "leadership", tn.node.IsLeader)
			if _, err := tn.apply(createTenantCmd("acme", "req-1")); err != nil {
				t.Fatal(err)
			}
			if withSnapshot {
				if err := tn.node.Snapshot(context.Background()); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
			}
			if _, err := tn.apply(createTenantCmd("beta", "req-2")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "cluster id", func() bool { return tn.node.ClusterID() != "" })
			clusterID := tn.node.ClusterID()
			applied := tn.sm.AppliedIndex()

			tn.restart()
			tn.waitLeader()
			eventually(t, "leadership", tn.node.IsLeader)
			if err := tn.node.Barrier(context.Background()); err != nil {
				t.Fatalf("Barrier: %v", err)
			}
			checkRestarted(t, tn, clusterID, applied, withSnapshot)
		})
	}
}

func checkRestarted(t *testing.T, tn *testNode, clusterID string, applied uint64, withSnapshot bool) {
	t.Helper()
	if ids := tenantIDs(t, tn); !slices.Equal(ids, []string{"acme", "beta"}) {
		t.Errorf("tenants after restart: got %v, want [acme beta]", ids)
	}
	// With a snapshot, the entries after it are applied again on top of the
	// restored state (that is how a store that lost unsynced writes catches
	// up); without one, nothing is.
	want := int64(0)
	if withSnapshot {
		want = 1
	}
	if got := tn.sm.applied.Load(); got != want {
		t.Errorf("entries applied again after restart: got %d, want %d", got, want)
	}
	if got := tn.sm.AppliedIndex(); got < applied {
		t.Errorf("applied index: got %d, want at least %d", got, applied)
	}
	logs := tn.logs.String()
	for _, bad := range []string{"bootstrapped cluster", "tenant_exists", "already exists"} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs after restart contain %q", bad)
		}
	}
	if got := tn.node.ClusterID(); got != clusterID {
		t.Errorf("cluster id after restart: got %q, want %q", got, clusterID)
	}
	res, err := tn.apply(createTenantCmd("acme", "req-1"))
	if err != nil || res.(cluster.Tenant).ID != "acme" {
		t.Errorf("retry of a request from before the restart: got %v, %v; want the recorded result", res, err)
	}
	if _, err := tn.apply(createTenantCmd("gamma", "")); err != nil {
		t.Errorf("Apply after restart: %v", err)
	}
}

// TestNode_CorruptSnapshot damages the snapshot on disk and restarts: the
// node refuses to start and the store keeps its state.
func TestNode_CorruptSnapshot(t *testing.T) {
	for _, fixCRC := range []bool{false, true} {
		name := "caught by raft's CRC"
		if fixCRC {
			name = "caught by the snapshot checksum"
		}
		t.Run(name, func(t *testing.T) {
			tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
			tn.waitLeader()
			eventually(t, "leadership", tn.node.IsLeader)
			if _, err := tn.apply(createTenantCmd("acme", "")); err != nil {
				t.Fatal(err)
			}
			if err := tn.node.Snapshot(context.Background()); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			applied := tn.sm.AppliedIndex()
			tn.stop()
			corruptSnapshot(t, tn.cfg.Dir, fixCRC)

			err := tn.start()
			if err == nil {
				t.Fatal("restart with a corrupt snapshot: got nil, want an error")
			}
			if !errors.Is(err, ErrSnapshotCorrupt) {
				t.Errorf("restart error: got %v, want it to wrap ErrSnapshotCorrupt", err)
			}
			t.Logf("restart refused: %v", err)
			st, err := store.Open(filepath.Join(tn.cfg.Dir, "store"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if got, err := st.Tenant("acme"); err != nil || got.ID != "acme" || st.AppliedIndex() != applied {
				t.Errorf("store after refused restore: got %+v, %v at index %d; want acme at %d", got, err, st.AppliedIndex(), applied)
			}
		})
	}
}

func TestNode_AddRemoveServer(t *testing.T) {
	addrs := freeAddrs(t, 2)
	cfg1 := testConfig(t, "cp1", t.TempDir())
	cfg1.BindAddr = addrs[0]
	n1 := startNode(t, cfg1)
	n1.waitLeader()
	eventually(t, "leadership", n1.node.IsLeader)
	if _, err := n1.apply(createTenantCmd("acme", "")); err != nil {
		t.Fatal(err)
	}

	cfg2 := testConfig(t, "cp2", t.TempDir())
	cfg2.BindAddr = addrs[1]
	cfg2.Join = true
	n2 := startNode(t, cfg2)
	ctx := context.Background()
	if err := n2.node.AddVoter(ctx, "cp3", "127.0.0.1:1"); !errors.Is(err, cluster.ErrNotLeader) {
		t.Errorf("AddVoter on a node outside the cluster: got %v, want ErrNotLeader", err)
	}
	if err := n1.node.AddVoter(ctx, "cp2", n2.node.Addr()); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	eventually(t, "cp2 to replicate", func() bool { return slices.Equal(tenantIDs(t, n2), []string{"acme"}) })
	eventually(t, "cp2 to adopt the cluster id", func() bool { return n2.node.ClusterID() == n1.node.ClusterID() })
	if peers := n1.node.Status().Peers; len(peers) != 2 {
		t.Errorf("peers: got %+v, want 2 voters", peers)
	}
	if err := n1.node.RemoveServer(ctx, "cp2"); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	if peers := n1.node.Status().Peers; len(peers) != 1 || peers[0].ID != "cp1" {
		t.Errorf("peers after removal: got %+v, want cp1 only", peers)
	}
	if _, err := n1.apply(createTenantCmd("beta", "")); err != nil {
		t.Errorf("Apply after removal: %v", err)
	}
}

func TestNode_SnapshotStats(t *testing.T) {
	tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
	tn.waitLeader()
	eventually(t, "leadership", tn.node.IsLeader)
	if got := tn.node.SnapshotStats(); got.Count != 0 {
		t.Fatalf("before any snapshot: got %+v, want none", got)
	}
	for i := range 2 {
		if _, err := tn.apply(createTenantCmd(fmt.Sprintf("tenant-%d", i), fmt.Sprintf("req-%d", i))); err != nil {
			t.Fatal(err)
		}
		if err := tn.node.Snapshot(context.Background()); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	}
	got := tn.node.SnapshotStats()
	if got.Count != 2 || got.Last <= 0 || got.Total < got.Last {
		t.Fatalf("after two snapshots: got %+v, want count 2, a last duration, and a total at least that", got)
	}
}
