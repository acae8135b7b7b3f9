package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pbe/pbe/cluster"
)

// startCluster starts n nodes over TCP on loopback, all bootstrapped with
// the same peers.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with each node's config passed through
// edit (if not nil) before it starts.
func startClusterWith(t *testing.T, n int, edit func(*Config)) []*testNode {
	t.Helper()
	addrs := freeAddrs(t, n)
	var peers []Peer
	for i, addr := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("cp%d", i+1), Addr: addr})
	}
	nodes := make([]*testNode, n)
	for i := range nodes {
		cfg := testConfig(t, peers[i].ID, t.TempDir())
		cfg.BindAddr = peers[i].Addr
		cfg.Peers = peers
		if edit != nil {
			edit(&cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	return nodes
}

// leaderOf waits until exactly one running node leads and all running nodes
// agree on it, and returns it.
func leaderOf(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, "one leader all nodes agree on", func() bool {
		leader = nil
		ids := map[string]bool{}
		for _, tn := range nodes {
			if tn.node == nil {
				continue
			}
			if tn.node.IsLeader() {
				if leader != nil {
					return false
				}
				leader = tn
			}
			id, _ := tn.node.Leader()
			ids[id] = true
		}
		return leader != nil && len(ids) == 1 && ids[leader.cfg.NodeID]
	})
	return leader
}

// TestCluster_ThreeNodes runs a 3-node cluster over TCP: replication,
// follower refusal, leader failover and a restart of the old leader.
func TestCluster_ThreeNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := leaderOf(t, nodes)

	if _, err := leader.apply(createTenantCmd("acme", "req-1")); err != nil {
		t.Fatalf("Apply on the leader: %v", err)
	}
	for _, tn := range nodes {
		eventually(t, tn.cfg.NodeID+" to replicate acme", func() bool {
			return slices.Equal(tenantIDs(t, tn), []string{"acme"})
		})
	}
	t.Run("the command's own error reaches the caller", func(t *testing.T) {
		if _, err := leader.apply(createTenantCmd("acme", "")); !errors.Is(err, cluster.ErrTenantExists) {
			t.Errorf("duplicate: got %v, want ErrTenantExists", err)
		}
	})
	t.Run("followers refuse writes and name the leader", func(t *testing.T) {
		for _, tn := range nodes {
			if tn == leader {
				continue
			}
			_, err := tn.apply(createTenantCmd("beta", ""))
			if !errors.Is(err, cluster.ErrNotLeader) || !strings.Contains(err.Error(), leader.cfg.NodeID) {
				t.Errorf("Apply on %s: got %v, want ErrNotLeader naming %s", tn.cfg.NodeID, err, leader.cfg.NodeID)
			}
			if err := tn.node.Barrier(context.Background()); !errors.Is(err, cluster.ErrNotLeader) {
				t.Errorf("Barrier on %s: got %v, want ErrNotLeader", tn.cfg.NodeID, err)
			}
		}
	})
	t.Run("one cluster id everywhere", func(t *testing.T) {
		eventually(t, "all nodes to share a cluster id", func() bool {
			id := nodes[0].node.ClusterID()
			return id != "" && nodes[1].node.ClusterID() == id && nodes[2].node.ClusterID() == id
		})
	})
	t.Run("Members lists the three voters everywhere", func(t *testing.T) {
		want := nodes[0].cfg.Peers
		for _, tn := range nodes {
			if got := tn.node.Members(); !slices.Equal(got, want) {
				t.Errorf("Members on %s: got %v, want %v", tn.cfg.NodeID, got, want)
			}
		}
	})
	t.Run("status lists three voters", func(t *testing.T) {
		st := leader.node.Status()
		if len(st.Peers) != 3 || st.Role != "leader" {
			t.Errorf("Status: got %+v, want a leader with 3 peers", st)
		}
		for _, p := range st.Peers {
			if p.Suffrage != "voter" {
				t.Errorf("peer %s: suffrage %q, want voter", p.ID, p.Suffrage)
			}
		}
	})

	old := leader
	old.stop()
	leader = leaderOf(t, nodes)
	if leader == old {
		t.Fatal("the stopped node is still the leader")
	}
	if _, err := leader.apply(createTenantCmd("beta", "req-2")); err != nil {
		t.Fatalf("Apply on the new leader: %v", err)
	}

	// The old leader restarts with the same directory and peers: no second
	// bootstrap, it catches up, and nothing is applied twice.
	if err := old.start(); err != nil {
		t.Fatalf("restart %s: %v", old.cfg.NodeID, err)
	}
	eventually(t, "the restarted node to catch up", func() bool {
		return slices.Equal(tenantIDs(t, old), []string{"acme", "beta"})
	})
	leader = leaderOf(t, nodes)
	if got := old.sm.applied.Load(); got != 1 {
		t.Errorf("entries the restarted node applied: got %d, want 1 (only beta)", got)
	}
	logs := old.logs.String()
	for _, bad := range []string{"bootstrapped cluster", "tenant_exists"} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs of the restarted node contain %q", bad)
		}
	}
	if _, err := leader.apply(createTenantCmd("gamma", "")); err != nil {
		t.Errorf("Apply after the restart: %v", err)
	}
}
