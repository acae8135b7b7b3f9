package controlplane

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Watch stream tuning.
const (
	watchBuffer = 4096
	watchPing   = 15 * time.Second
)

// handleWatch streams routing changes to gateways: a snapshot of every
// route and node, then each change as this node applies it. Changes are
// read from the local store, so the stream is as fresh as this node. A
// reader that falls behind is disconnected and reconnects for a new
// snapshot: it never silently misses a change.
func (c *ControlPlane) handleWatch(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "streaming unsupported"))
		return
	}
	sub := c.store.Subscribe(watchBuffer)
	defer sub.Close()
	snap, err := c.routingSnapshot()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	if enc.Encode(snap) != nil {
		return
	}
	flusher.Flush()
	ping := time.NewTicker(watchPing)
	defer ping.Stop()
	for {
		var ev cluster.WatchEvent
		select {
		case <-r.Context().Done():
			return
		case <-c.quit:
			return
		case <-ping.C:
			ev = cluster.WatchEvent{Type: "ping"}
		case ch, ok := <-sub.C:
			if !ok || ch.Kind == store.ChangeReset {
				return // fell behind or state replaced: the reader reconnects
			}
			ev = c.changeEvent(ch)
		}
		if enc.Encode(ev) != nil {
			return
		}
		flusher.Flush()
	}
}

// routingSnapshot is every node and every routable tenant.
func (c *ControlPlane) routingSnapshot() (cluster.WatchEvent, error) {
	index := c.store.AppliedIndex()
	nodes, err := c.store.Nodes()
	if err != nil {
		return cluster.WatchEvent{}, err
	}
	addr := map[string]string{}
	for _, n := range nodes {
		if n.State != cluster.NodeDown {
			addr[n.ID] = n.Addr
		}
	}
	ts, err := c.store.Tenants(store.TenantFilter{State: cluster.TenantActive})
	if err != nil {
		return cluster.WatchEvent{}, err
	}
	routes := make([]cluster.Route, 0, len(ts))
	domains := map[string]string{}
	for _, t := range ts {
		for _, d := range t.Domains {
			domains[d] = t.ID
		}
		if a, ok := addr[t.Node]; ok {
			routes = append(routes, cluster.Route{Tenant: t.ID, Node: t.Node, Addr: a, Epoch: t.Epoch, Domains: t.Domains})
		}
	}
	return cluster.WatchEvent{Type: "snapshot", Index: index, Routes: routes, Nodes: nodes, DomainMap: domains}, nil
}

// changeEvent describes the current state of what ch changed.
func (c *ControlPlane) changeEvent(ch store.Change) cluster.WatchEvent {
	if ch.Kind == store.ChangeNode {
		n, err := c.store.Node(ch.ID)
		if err != nil {
			return cluster.WatchEvent{Type: "ping"}
		}
		return cluster.WatchEvent{Type: "node", Index: ch.Index, Node: &n}
	}
	ev := cluster.WatchEvent{Type: "tenant", Index: ch.Index, Tenant: ch.ID}
	t, err := c.store.Tenant(ch.ID)
	if err != nil || t.State != cluster.TenantActive {
		return ev
	}
	ev.Domains = t.Domains
	if t.Node == "" {
		return ev
	}
	if n, err := c.store.Node(t.Node); err == nil && n.State != cluster.NodeDown {
		ev.Route = &cluster.Route{Tenant: t.ID, Node: n.ID, Addr: n.Addr, Epoch: t.Epoch, Domains: t.Domains}
	}
	return ev
}
