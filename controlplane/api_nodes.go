package controlplane

import (
	"net/http"
	"time"

	"github.com/pbe/pbe/cluster"
)

// NodeView is a tenant node as GET /api/cp/nodes shows it.
type NodeView struct {
	cluster.Node
	// Alive, LastHeartbeat and the reported figures come from the leader's
	// memory (they are not replicated).
	Alive         bool       `json:"alive"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	Active        int        `json:"active"`
	Load          float64    `json:"load"`
	Assigned      int        `json:"assigned"`
}

func (c *ControlPlane) nodeView(n cluster.Node, assigned int) NodeView {
	v := NodeView{Node: n, Assigned: assigned, Alive: n.State != cluster.NodeDown && c.fleet.alive(n.ID, c.cfg.Lease, c.cfg.FailoverMargin)}
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	if r, ok := c.fleet.seen[n.ID]; ok {
		at := r.at.UTC()
		v.LastHeartbeat, v.Active, v.Load = &at, r.hb.Active, r.hb.Load
	}
	return v
}

// handleListNodes runs on the leader, which knows the nodes' leases.
func (c *ControlPlane) handleListNodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := c.store.Nodes()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	by, err := c.tenantsByNode()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	items := make([]NodeView, 0, len(nodes))
	for _, n := range nodes {
		items = append(items, c.nodeView(n, len(by[n.ID])))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": len(items)})
}

func (c *ControlPlane) handleGetNode(w http.ResponseWriter, r *http.Request) {
	n, err := c.store.Node(r.PathValue("id"))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	by, err := c.tenantsByNode()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c.nodeView(n, len(by[n.ID])))
}

func (c *ControlPlane) handleDrainNode(w http.ResponseWriter, r *http.Request) {
	moves, err := c.DrainNode(r.Context(), r.PathValue("id"))
	if err != nil && moves == nil {
		cluster.WriteError(w, err)
		return
	}
	body := map[string]any{"node": r.PathValue("id"), "moves": moves}
	if err != nil {
		body["warning"] = err.Error()
	}
	writeJSON(w, http.StatusAccepted, body)
}

type moveRequest struct {
	// Node is the target; empty lets placement choose.
	Node string `json:"node"`
}

func (c *ControlPlane) handleMoveTenant(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req moveRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	t, err := c.MoveTenant(r.Context(), id, req.Node)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c.view(t))
}

type rebalanceRequest struct {
	// Max bounds the number of moves (default 100).
	Max int `json:"max"`
}

func (c *ControlPlane) handleRebalance(w http.ResponseWriter, r *http.Request) {
	req := rebalanceRequest{Max: 100}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	if req.Max < 1 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "max" must be at least 1`))
		return
	}
	moves, err := c.Rebalance(r.Context(), req.Max)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"moves": moves})
}

// Internal endpoints, called by tenant nodes and gateways with the cluster
// secret.

func (c *ControlPlane) handleRegisterNode(w http.ResponseWriter, r *http.Request) {
	var n cluster.Node
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &n); err != nil {
		cluster.WriteError(w, err)
		return
	}
	out, err := c.RegisterNode(r.Context(), n)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *ControlPlane) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb cluster.Heartbeat
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes*8, &hb); err != nil {
		cluster.WriteError(w, err)
		return
	}
	reply, err := c.Heartbeat(r.Context(), hb)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// handleRoute returns where a tenant is served, assigning it first if it
// has no live node.
func (c *ControlPlane) handleRoute(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t, err := c.Assign(r.Context(), id)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	n, err := c.store.Node(t.Node)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, cluster.Route{Tenant: t.ID, Node: n.ID, Addr: n.Addr, Epoch: t.Epoch, Domains: t.Domains})
}

type advanceRequest struct {
	Tenant cluster.Tenant `json:"tenant"`
	Node   string         `json:"node"`
}

func (c *ControlPlane) handleAdvanceEpoch(w http.ResponseWriter, r *http.Request) {
	var req advanceRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.Tenant.ID != r.PathValue("id") {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "tenant id in the body does not match the path"))
		return
	}
	t, err := c.AdvanceEpoch(r.Context(), req.Tenant, req.Node)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}
