package raft

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Status is a point-in-time view of the node, for health checks and the
// cluster admin API.
type Status struct {
	NodeID    string `json:"node_id"`
	Addr      string `json:"addr"`
	ClusterID string `json:"cluster_id,omitempty"`
	// Role is leader, follower, candidate or shutdown.
	Role         string `json:"role"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LeaderID     string `json:"leader_id,omitempty"`
	LeaderAddr   string `json:"leader_addr,omitempty"`
	// Peers is the latest configuration, sorted by id; empty if it cannot be
	// read (the node is shutting down).
	Peers             []PeerStatus `json:"peers"`
	LastSnapshotIndex uint64       `json:"last_snapshot_index"`
	LastSnapshotTerm  uint64       `json:"last_snapshot_term"`
}

// PeerStatus is one member of the configuration.
type PeerStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Suffrage is voter, nonvoter or staging.
	Suffrage string `json:"suffrage"`
}

// Status returns the node's current status. It does not block on the
// network.
func (n *Node) Status() Status {
	leaderAddr, leaderID := n.raft.LeaderWithID()
	st := Status{
		NodeID:       n.cfg.NodeID,
		Addr:         n.addr,
		ClusterID:    n.ClusterID(),
		Role:         strings.ToLower(n.raft.State().String()),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LeaderID:     string(leaderID),
		LeaderAddr:   string(leaderAddr),
		Peers:        []PeerStatus{},
	}
	stats := n.raft.Stats()
	st.LastSnapshotIndex, _ = strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
	st.LastSnapshotTerm, _ = strconv.ParseUint(stats["last_snapshot_term"], 10, 64)
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Peers = append(st.Peers, PeerStatus{ID: string(s.ID), Addr: string(s.Address), Suffrage: suffrage(s.Suffrage)})
		}
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return strings.ToLower(s.String())
}

// SnapshotStats returns how many snapshots this member persisted since it
// started and how long they took. No lock.
func (n *Node) SnapshotStats() SnapshotStats {
	st := &n.fsm.snaps
	return SnapshotStats{Count: st.count.Load(), Total: time.Duration(st.total.Load()), Last: time.Duration(st.last.Load())}
}
