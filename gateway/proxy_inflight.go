package gateway

import (
	"context"
	"errors"
	"sync"
)

// errSuperseded cancels an attempt whose route the watch stream replaced:
// the node it went to no longer owns the tenant (it failed over, or its
// lease ran out while it was paused), so no answer from it can be
// acknowledged; the request is retried at the new owner.
var errSuperseded = errors.New("gateway: the tenant's route changed while the request was in flight")

// inflight tracks attempts in flight per tenant, so that a route change
// can abandon the ones sent to the old owner. A move does not leave any:
// the old owner finishes its in-flight requests before it releases the
// tenant and the route changes.
type inflight struct {
	mu sync.Mutex
	m  map[string]map[*attemptCtl]struct{}
}

type attemptCtl struct {
	route  *route
	cancel context.CancelCauseFunc
}

func (f *inflight) add(id string, c *attemptCtl) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]map[*attemptCtl]struct{}{}
	}
	if f.m[id] == nil {
		f.m[id] = map[*attemptCtl]struct{}{}
	}
	f.m[id][c] = struct{}{}
}

func (f *inflight) remove(id string, c *attemptCtl) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m[id], c)
	if len(f.m[id]) == 0 {
		delete(f.m, id)
	}
}

// supersede cancels tenant id's attempts that went to a route older than
// cur (nil: the tenant has no route now).
func (f *inflight) supersede(id string, cur *route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.m[id] {
		if cur == nil || cur.Epoch > c.route.Epoch || (cur.Epoch == c.route.Epoch && cur.Node != c.route.Node) {
			c.cancel(errSuperseded)
		}
	}
}

// tenants returns the tenants with attempts in flight.
func (f *inflight) tenants() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.m))
	for id := range f.m {
		ids = append(ids, id)
	}
	return ids
}

// supersedeAll re-checks every tenant with attempts in flight against the
// route cache (after a snapshot or a node event).
func (p *Proxy) supersedeAll() {
	for _, id := range p.flights.tenants() {
		p.flights.supersede(id, p.routes.get(id))
	}
}
