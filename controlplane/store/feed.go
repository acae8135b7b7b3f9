package store

import (
	"encoding/json"
	"sync"
)

// Change kinds.
const (
	ChangeTenant = "tenant"
	ChangeNode   = "node"
	// ChangeReset means all state may have changed (a snapshot was restored):
	// re-read everything.
	ChangeReset = "reset"
)

// Change says which record an applied command changed.
type Change struct {
	Index uint64 `json:"index"`
	Kind  string `json:"kind"`
	ID    string `json:"id,omitempty"`
}

// Subscription receives the store's changes in apply order. Its channel is
// closed when the subscriber falls behind by more than its buffer (or on
// Close): the subscriber must then re-read the state it follows.
type Subscription struct {
	C    <-chan Change
	c    chan Change
	feed *feed
}

// Close ends the subscription.
func (sub *Subscription) Close() { sub.feed.remove(sub) }

type feed struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscribe returns a subscription to changes applied from now on, with a
// buffer of n changes.
func (s *Store) Subscribe(n int) *Subscription {
	c := make(chan Change, n)
	sub := &Subscription{C: c, c: c, feed: &s.feed}
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	if s.feed.subs == nil {
		s.feed.subs = map[*Subscription]struct{}{}
	}
	s.feed.subs[sub] = struct{}{}
	return sub
}

func (f *feed) remove(sub *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[sub]; ok {
		delete(f.subs, sub)
		close(sub.c)
	}
}

// publish sends c to every subscriber without blocking; one that is full
// is dropped.
func (f *feed) publish(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		select {
		case sub.c <- c:
		default:
			delete(f.subs, sub)
			close(sub.c)
		}
	}
}

// changeOf returns what a successfully applied command changed, if it is
// something subscribers follow.
func changeOf(cmd *Command, index uint64) (Change, bool) {
	var p struct {
		ID     string `json:"id"`
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if json.Unmarshal(cmd.Data, &p) != nil {
		return Change{}, false
	}
	switch cmd.Type {
	case CmdCreateTenant:
		return Change{Index: index, Kind: ChangeTenant, ID: p.Tenant.ID}, true
	case CmdDeleteTenant, CmdRestoreTenant, CmdPurgeTenant, CmdUpdateTenant, CmdSetDomains:
		return Change{Index: index, Kind: ChangeTenant, ID: p.ID}, true
	case CmdRegisterNode:
		return Change{Index: index, Kind: ChangeNode, ID: p.Node.ID}, true
	case CmdSetNodeState:
		return Change{Index: index, Kind: ChangeNode, ID: p.ID}, true
	}
	return Change{}, false
}
