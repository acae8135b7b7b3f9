package raft

import (
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// LeadershipChanges returns the channel, made in New, on which the node
// reports its leadership: true when it becomes leader, false when it stops
// being leader. The node starts as not leader. The channel is closed by Stop,
// after a last false if the node was leading.
//
// The channel holds one value and never blocks raft: a new value replaces
// one the consumer has not received yet. So a value is the state at the
// time it was sent, not an edge, and the consumer sees the latest state
// whenever it reads: a node that became leader before anyone read the
// channel delivers true to the first read, exactly once. Two equal values in
// a row mean the state flipped and back in between (for true: this is a new
// term, and leader-only work of the old term should be restarted). Before
// doing leader-only work on true, call Barrier: entries of earlier terms may
// not be applied yet. IsLeader may already disagree by the time a value is
// read.
//
// There is one channel per node: give it to one consumer.
func (n *Node) LeadershipChanges() <-chan bool { return n.leaderCh }

// publishLeadership sends leading on leaderCh, replacing a value the
// consumer has not received. Only one goroutine at a time may call it (watch,
// then Stop once watch has ended), so the replacement cannot race.
func (n *Node) publishLeadership(leading bool) {
	n.leading = leading
	for {
		select {
		case n.leaderCh <- leading:
			return
		default:
		}
		select {
		case <-n.leaderCh:
		default:
		}
	}
}

// Members returns the voters of the latest configuration this node knows,
// sorted by id. The latest configuration may not be committed yet (a
// membership change in flight) and, on a follower, may lag the leader's.
// It does not block on the network and is cheaper than Status.
func (n *Node) Members() []Peer {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var peers []Peer
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			peers = append(peers, Peer{ID: string(s.ID), Addr: string(s.Address)})
		}
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return peers
}
