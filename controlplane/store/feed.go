package store

import (
	"sync"

	"github.com/pbe/pbe/cluster"
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
// something subscribers follow, from the command's result (a tenant's or
// a node's record, whose id is the one the command named).
func changeOf(typ string, v any, index uint64) (Change, bool) {
	switch typ {
	case CmdCreateTenant, CmdDeleteTenant, CmdRestoreTenant, CmdPurgeTenant, CmdUpdateTenant, CmdSetDomains:
		if t, ok := v.(cluster.Tenant); ok {
			return Change{Index: index, Kind: ChangeTenant, ID: t.ID}, true
		}
	case CmdRegisterNode, CmdSetNodeState:
		if n, ok := v.(cluster.Node); ok {
			return Change{Index: index, Kind: ChangeNode, ID: n.ID}, true
		}
	}
	return Change{}, false
}
