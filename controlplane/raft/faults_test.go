package raft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// fast shortens a test node's timeouts, so that failures are noticed and
// leaders elected within a few hundred milliseconds.
func fast(c *Config) {
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 10 * time.Millisecond
	c.TransportTimeout = 2 * time.Second
	c.ApplyTimeout = 5 * time.Second
}

// onNetwork returns a config edit that makes a node fast and puts it on nw.
func onNetwork(nw *network) func(*Config) {
	return func(c *Config) {
		fast(c)
		c.WrapStreamLayer = nw.wrap(c.NodeID)
	}
}

// retryable reports whether an Apply error means "try again on the
// leader": no leader, or the outcome is unknown.
func retryable(err error) bool {
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, cluster.ErrUnavailable)
}

// tryApply applies cmd on whichever of nodes leads, retrying on retryable
// errors until it succeeds, fails otherwise, or done is closed. cmd must
// carry a request id, so a retry of a write that did commit is harmless.
func tryApply(nodes []*testNode, cmd []byte, done <-chan struct{}) error {
	deadline := time.Now().Add(waitTimeout)
	var last error
	for time.Now().Before(deadline) {
		for _, tn := range nodes {
			if tn.node == nil || !tn.node.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := tn.node.Apply(ctx, cmd)
			cancel()
			if err == nil || !retryable(err) {
				return err
			}
			last = err
		}
		select {
		case <-done:
			return fmt.Errorf("stopped; last error: %v", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no leader of %d nodes committed it within %s; last error: %v", len(nodes), waitTimeout, last)
}

// mustCreate creates tenant id through whichever of nodes leads.
func mustCreate(t *testing.T, nodes []*testNode, id string) {
	t.Helper()
	if err := tryApply(nodes, createTenantCmd(id, "req-"+id), nil); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// waitConverged waits until every node's store holds the same tenants at
// the same applied index as the leader's, after a barrier on the leader.
func waitConverged(t *testing.T, nodes []*testNode) {
	t.Helper()
	var diff string
	deadline := time.Now().Add(waitTimeout)
	for {
		diff = storesDiffer(t, nodes)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stores did not converge: %s", diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storesDiffer returns "" if a leader among nodes has applied everything
// it committed and every node's store equals its store, else what differs.
func storesDiffer(t *testing.T, nodes []*testNode) string {
	t.Helper()
	var leader *testNode
	for _, tn := range nodes {
		if tn.node != nil && tn.node.IsLeader() {
			leader = tn
		}
	}
	if leader == nil {
		return "no leader"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := leader.node.Barrier(ctx); err != nil {
		return "barrier: " + err.Error()
	}
	want, err := leader.sm.Tenants(store.TenantFilter{})
	if err != nil {
		t.Fatalf("Tenants: %v", err)
	}
	wantIndex := leader.sm.AppliedIndex()
	for _, tn := range nodes {
		got, err := tn.sm.Tenants(store.TenantFilter{})
		if err != nil {
			t.Fatalf("Tenants: %v", err)
		}
		if idx := tn.sm.AppliedIndex(); idx != wantIndex || !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("%s has %v at index %d, leader %s has %v at %d",
				tn.cfg.NodeID, tenantIDs(t, tn), idx, leader.cfg.NodeID, tenantIDs(t, leader), wantIndex)
		}
	}
	return ""
}

// recvLeadership receives the next value of tn's LeadershipChanges.
func recvLeadership(t *testing.T, tn *testNode) bool {
	t.Helper()
	select {
	case v, ok := <-tn.node.LeadershipChanges():
		if !ok {
			t.Fatalf("LeadershipChanges of %s: closed", tn.cfg.NodeID)
		}
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("LeadershipChanges of %s: nothing within %s", tn.cfg.NodeID, waitTimeout)
	}
	return false
}

// without returns nodes minus drop.
func without(nodes []*testNode, drop *testNode) []*testNode {
	return slices.DeleteFunc(slices.Clone(nodes), func(tn *testNode) bool { return tn == drop })
}

// followerOf returns a node of nodes other than leader.
func followerOf(nodes []*testNode, leader *testNode) *testNode {
	return without(nodes, leader)[0]
}

// TestPartition_Minority cuts a follower off: it cannot commit, the majority
// goes on, and after healing all three stores are identical.
func TestPartition_Minority(t *testing.T) {
	nw := newNetwork()
	nodes := startClusterWith(t, 3, onNetwork(nw))
	leader := leaderOf(t, nodes)
	mustCreate(t, nodes, "before")
	waitConverged(t, nodes)

	minority := followerOf(nodes, leader)
	majority := without(nodes, minority)
	nw.isolate(minority.cfg.NodeID)
	for i := range 5 {
		mustCreate(t, majority, fmt.Sprintf("during-%d", i))
	}
	// Try to write on the cut node for several election timeouts: it may
	// become a candidate, never a leader that commits.
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := minority.node.Apply(ctx, createTenantCmd(fmt.Sprintf("minority-%d", i), ""))
		cancel()
		if err == nil {
			t.Fatalf("Apply on the cut-off node %s succeeded", minority.cfg.NodeID)
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Apply on the cut-off node: got %v, want ErrNotLeader or ErrOutcomeUnknown", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustCreate(t, majority, "during-last")

	nw.heal(minority.cfg.NodeID)
	mustCreate(t, nodes, "after")
	waitConverged(t, nodes)
	want := []string{"after", "before", "during-0", "during-1", "during-2", "during-3", "during-4", "during-last"}
	if got := tenantIDs(t, minority); !slices.Equal(got, want) {
		t.Errorf("tenants on the healed node: got %v, want %v", got, want)
	}
}

// TestPartition_Leader cuts the leader off: the other two elect a leader
// and commit, the old leader cannot, and after healing it follows and
// converges; its uncommitted write is gone.
func TestPartition_Leader(t *testing.T) {
	nw := newNetwork()
	nodes := startClusterWith(t, 3, onNetwork(nw))
	old := leaderOf(t, nodes)
	mustCreate(t, nodes, "before")
	waitConverged(t, nodes)
	if v := recvLeadership(t, old); !v {
		t.Fatalf("LeadershipChanges of the leader: got %v, want true", v)
	}

	nw.isolate(old.cfg.NodeID)
	// It may still believe it leads for a lease timeout: the write is
	// proposed but can never commit.
	_, err := old.apply(createTenantCmd("lost", "req-lost"))
	if err == nil {
		t.Fatal("Apply on the cut-off leader succeeded")
	}
	if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("Apply on the cut-off leader: got %v, want ErrNotLeader or ErrOutcomeUnknown", err)
	}
	rest := without(nodes, old)
	leader := leaderOf(t, rest)
	mustCreate(t, rest, "during")
	eventually(t, "the old leader to step down", func() bool { return !old.node.IsLeader() })
	if v := recvLeadership(t, old); v {
		t.Errorf("LeadershipChanges of the old leader: got true, want false")
	}
	if v := recvLeadership(t, leader); !v {
		t.Errorf("LeadershipChanges of the new leader: got %v, want true", v)
	}

	nw.heal(old.cfg.NodeID)
	mustCreate(t, nodes, "after")
	waitConverged(t, nodes)
	if got, want := tenantIDs(t, old), []string{"after", "before", "during"}; !slices.Equal(got, want) {
		t.Errorf("tenants on the old leader: got %v, want %v (its uncommitted write dropped)", got, want)
	}
}

// TestCluster_SnapshotInstall restarts a follower that missed more entries
// than the leader keeps: it catches up from an installed snapshot.
func TestCluster_SnapshotInstall(t *testing.T) {
	const trailing, missed = 4, 30
	nodes := startClusterWith(t, 3, func(c *Config) {
		fast(c)
		c.SnapshotThreshold = 1024 // snapshots only when the test asks
		c.TrailingLogs = trailing
		c.LogSegmentSize = 4 << 10 // a few entries each, so compaction drops some
	})
	leader := leaderOf(t, nodes)
	mustCreate(t, nodes, "t-00")
	waitConverged(t, nodes)

	lagging := followerOf(nodes, leader)
	lagging.stop()
	for i := range missed {
		mustCreate(t, nodes, fmt.Sprintf("t-%02d", i+1))
	}
	leader = leaderOf(t, without(nodes, lagging))
	if err := leader.node.Snapshot(context.Background()); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snapIndex := leader.node.Status().LastSnapshotIndex

	if err := lagging.start(); err != nil {
		t.Fatalf("restart %s: %v", lagging.cfg.NodeID, err)
	}
	waitConverged(t, nodes)
	// Raft records the install just after the state machine restored it.
	eventually(t, lagging.cfg.NodeID+" to record the installed snapshot", func() bool {
		return lagging.node.Status().LastSnapshotIndex >= snapIndex &&
			strings.Contains(lagging.logs.String(), "Installed remote snapshot")
	})
	if got := lagging.sm.applied.Load(); got >= missed {
		t.Errorf("entries %s applied one by one: got %d, want fewer than the %d it missed", lagging.cfg.NodeID, got, missed)
	}
	mustCreate(t, nodes, "after")
	waitConverged(t, nodes)
}

// TestCluster_RestartAll stops all three nodes and starts them again with
// the same directories and peers: all data is back, nobody bootstraps
// again and nothing is applied twice.
func TestCluster_RestartAll(t *testing.T) {
	nodes := startClusterWith(t, 3, fast)
	leaderOf(t, nodes)
	for _, id := range []string{"acme", "beta", "gamma"} {
		mustCreate(t, nodes, id)
	}
	eventually(t, "a cluster id everywhere", func() bool {
		id := nodes[0].node.ClusterID()
		return id != "" && nodes[1].node.ClusterID() == id && nodes[2].node.ClusterID() == id
	})
	waitConverged(t, nodes)
	clusterID := nodes[0].node.ClusterID()

	for _, tn := range nodes {
		tn.stop()
	}
	for _, tn := range nodes {
		if err := tn.start(); err != nil {
			t.Fatalf("restart %s: %v", tn.cfg.NodeID, err)
		}
	}
	leaderOf(t, nodes)
	waitConverged(t, nodes)
	for _, tn := range nodes {
		if got, want := tenantIDs(t, tn), []string{"acme", "beta", "gamma"}; !slices.Equal(got, want) {
			t.Errorf("tenants on %s: got %v, want %v", tn.cfg.NodeID, got, want)
		}
		if got := tn.node.ClusterID(); got != clusterID {
			t.Errorf("cluster id of %s: got %q, want %q", tn.cfg.NodeID, got, clusterID)
		}
		if got := tn.sm.applied.Load(); got != 0 {
			t.Errorf("entries %s applied again: got %d, want 0", tn.cfg.NodeID, got)
		}
		if strings.Contains(tn.logs.String(), "bootstrapped cluster") {
			t.Errorf("%s bootstrapped again", tn.cfg.NodeID)
		}
	}
	mustCreate(t, nodes, "delta")
	waitConverged(t, nodes)
}
