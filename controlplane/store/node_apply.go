package store

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

func nodeKey(id string) []byte { return append(append([]byte{}, prefixNode...), id...) }

// applyRegisterNode records a node or updates its address and capacity. A
// registering node becomes active again unless it is draining.
func applyRegisterNode(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RegisterNode](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	n := p.Node
	if !cluster.ValidNodeID(n.ID) || !validHostPort(n.Addr) || n.Capacity < 1 {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "node needs an id (letters, digits, . - _), a host:port address and a positive capacity"), nil
	}
	var old cluster.Node
	found, err := getJSON(a.txn, nodeKey(n.ID), &old)
	if err != nil {
		return nil, nil, err
	}
	n.State, n.RegisteredAt = cluster.NodeActive, a.now
	if found {
		n.RegisteredAt = old.RegisteredAt
		if old.State == cluster.NodeDraining {
			n.State = cluster.NodeDraining
		}
	}
	n.UpdatedAt, n.Version = a.now, a.index
	if err := setJSON(a.txn, nodeKey(n.ID), n); err != nil {
		return nil, nil, err
	}
	if !found {
		a.event(cluster.Event{Type: EventNodeJoined, Node: n.ID, Data: map[string]any{"addr": n.Addr, "capacity": n.Capacity}})
	} else if old.State != n.State {
		a.event(cluster.Event{Type: "node." + string(n.State), Node: n.ID})
	}
	return n, nil, nil
}

// applySetNodeState changes a node's state.
func applySetNodeState(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[SetNodeState](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	switch p.State {
	case cluster.NodeActive, cluster.NodeDraining, cluster.NodeDown:
	default:
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "node state %q must be active, draining or down", p.State), nil
	}
	var n cluster.Node
	found, err := getJSON(a.txn, nodeKey(p.ID), &n)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, cluster.Errorf(cluster.ErrNotFound, "node %q not found", p.ID), nil
	}
	if p.ExpectedVersion != 0 && p.ExpectedVersion != n.Version {
		return nil, cluster.Errorf(cluster.ErrStaleVersion, "node %s changed (version %d, expected %d)", p.ID, n.Version, p.ExpectedVersion), nil
	}
	if n.State != p.State {
		a.event(cluster.Event{Type: "node." + string(p.State), Node: n.ID})
	}
	n.State, n.UpdatedAt, n.Version = p.State, a.now, a.index
	if err := setJSON(a.txn, nodeKey(n.ID), n); err != nil {
		return nil, nil, err
	}
	return n, nil, nil
}

// Node returns node id, or cluster.ErrNotFound.
func (s *Store) Node(id string) (cluster.Node, error) {
	var n cluster.Node
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, nodeKey(id), &n)
		if err == nil && !found {
			err = cluster.Errorf(cluster.ErrNotFound, "node %q not found", id)
		}
		return err
	})
	return n, err
}

// Nodes returns every node, sorted by id.
func (s *Store) Nodes() ([]cluster.Node, error) {
	out := []cluster.Node{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixNode, func(n *cluster.Node) { out = append(out, *n) })
	})
	return out, err
}
