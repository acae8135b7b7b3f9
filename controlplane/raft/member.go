package raft

import "github.com/hashicorp/raft"

// IsMember reports whether this node is in the cluster configuration it
// knows: false for a node started with Join that has not been added yet.
func (n *Node) IsMember() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			return true
		}
	}
	return false
}
