package gateway

import (
	"net/url"
	"strconv"
	"sync"

	"github.com/pbe/pbe/cluster"
)

// route is a cached cluster.Route with what each request needs from it
// precomputed. A route is never modified once cached: an update replaces
// it, so a request can tell whether the route it used is still current.
type route struct {
	cluster.Route
	target *url.URL // http://{Addr}
	epoch  string   // Epoch in decimal, as HeaderEpoch carries it
}

// newRoute returns r ready for the cache, or nil if r names no tenant or
// no node address.
func newRoute(r cluster.Route) *route {
	if r.Tenant == "" || r.Addr == "" {
		return nil
	}
	return &route{Route: r, target: &url.URL{Scheme: "http", Host: r.Addr}, epoch: strconv.FormatUint(r.Epoch, 10)}
}

// routeTable is the gateway's route cache: tenant id to route. Reads take
// a read lock only; no lock is held across I/O. Updates from the watch
// stream are authoritative (the stream is ordered); answers of Route calls
// are only offered, because a watch event may have overtaken them.
type routeTable struct {
	mu sync.RWMutex
	m  map[string]*route
	// domains maps custom domains to their tenant; it follows the watch
	// stream only (a tenant keeps its domains while it has no route).
	domains map[string]string
}

// tenantForDomain returns the tenant of a custom domain.
func (t *routeTable) tenantForDomain(host string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	id, ok := t.domains[host]
	return id, ok
}

// replaceDomains makes m the whole domain map (a watch snapshot).
func (t *routeTable) replaceDomains(m map[string]string) {
	if m == nil {
		m = map[string]string{}
	}
	t.mu.Lock()
	t.domains = m
	t.mu.Unlock()
}

// setDomains records tenant id's custom domains (a watch event).
func (t *routeTable) setDomains(id string, domains []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.domains == nil {
		t.domains = map[string]string{}
	}
	for d, owner := range t.domains {
		if owner == id {
			delete(t.domains, d)
		}
	}
	for _, d := range domains {
		t.domains[d] = id
	}
}

// get returns tenant id's cached route, or nil.
func (t *routeTable) get(id string) *route {
	t.mu.RLock()
	rt := t.m[id]
	t.mu.RUnlock()
	return rt
}

// replace makes routes the whole cache (a watch snapshot) and returns how
// many it holds.
func (t *routeTable) replace(routes []cluster.Route) int {
	m := make(map[string]*route, len(routes))
	for _, r := range routes {
		if rt := newRoute(r); rt != nil {
			m[r.Tenant] = rt
		}
	}
	t.mu.Lock()
	t.m = m
	t.mu.Unlock()
	return len(m)
}

// set caches r (a watch event); a route without an address removes the
// tenant instead.
func (t *routeTable) set(r cluster.Route) {
	rt := newRoute(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt == nil {
		delete(t.m, r.Tenant)
		return
	}
	t.m[r.Tenant] = rt
}

// remove forgets tenant id (a watch event: it has no route now).
func (t *routeTable) remove(id string) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// offer caches r, a Route answer, unless the cache already holds a route
// at the same or a newer epoch. It returns the route now cached for the
// tenant (nil if r is unusable).
func (t *routeTable) offer(r cluster.Route) *route {
	rt := newRoute(r)
	if rt == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur := t.m[r.Tenant]; cur != nil && cur.Epoch >= rt.Epoch {
		return cur
	}
	t.m[r.Tenant] = rt
	return rt
}

// forget drops tenant id's route if it is still used, the one a failed
// request took; a newer route stays.
func (t *routeTable) forget(id string, used *route) {
	t.mu.Lock()
	if t.m[id] == used {
		delete(t.m, id)
	}
	t.mu.Unlock()
}

// updateNode applies a node event: a node that is down loses its routes,
// a node with a new address takes its routes along.
func (t *routeTable) updateNode(n cluster.Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, rt := range t.m {
		switch {
		case rt.Node != n.ID:
		case n.State == cluster.NodeDown || n.Addr == "":
			delete(t.m, id)
		case rt.Addr != n.Addr:
			r := rt.Route
			r.Addr = n.Addr
			t.m[id] = newRoute(r)
		}
	}
}

// size returns how many routes are cached.
func (t *routeTable) size() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
