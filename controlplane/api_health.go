package controlplane

import (
	"context"
	"net/http"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/raft"
)

// FleetHealth is the control plane's view of the platform
// (GET /api/cp/health): its own Raft state and every tenant node's last
// heartbeat and state, as the leader knows them.
type FleetHealth struct {
	// Status is "ok" when every check passes and every node that should
	// be serving is alive, else "degraded".
	Status       string             `json:"status"`
	Checks       map[string]string  `json:"checks"`
	ControlPlane ControlPlaneHealth `json:"control_plane"`
	Nodes        []NodeView         `json:"nodes"`
	Summary      map[string]int     `json:"summary"`
	Time         time.Time          `json:"time"`
	Members      []cluster.Member   `json:"members"`
	Peers        []raft.PeerStatus  `json:"peers"`
	Problems     []string           `json:"problems,omitempty"`
}

// ControlPlaneHealth is the Raft part of FleetHealth.
type ControlPlaneHealth struct {
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// handleHealth runs on the leader, which alone knows the nodes' leases.
func (c *ControlPlane) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := FleetHealth{Status: "ok", Checks: map[string]string{}, Summary: map[string]int{}, Time: time.Now().UTC()}
	st := c.raft.Status()
	h.ControlPlane = ControlPlaneHealth{Leader: st.LeaderID, Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex}
	h.Peers = st.Peers
	members, err := c.store.Members()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	h.Members = members
	check := func(name string, fn func(context.Context) error) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := fn(ctx); err != nil {
			h.Checks[name] = err.Error()
			h.Problems = append(h.Problems, name+": "+err.Error())
			return
		}
		h.Checks[name] = "ok"
	}
	check("control_plane", c.Ready)
	check("disk", c.DiskReady)
	if c.objects != nil {
		check("object_store", c.objects.Ping)
	}
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
	h.Nodes = make([]NodeView, 0, len(nodes))
	for _, n := range nodes {
		v := c.nodeView(n, len(by[n.ID]))
		h.Nodes = append(h.Nodes, v)
		h.Summary["nodes"]++
		h.Summary[string(n.State)]++
		h.Summary["tenants_assigned"] += v.Assigned
		h.Summary["tenants_active"] += v.Active
		if v.Alive {
			h.Summary["alive"]++
		} else if n.State != cluster.NodeDown {
			h.Problems = append(h.Problems, "node "+n.ID+" has missed its lease")
		} else if v.Assigned > 0 {
			h.Problems = append(h.Problems, "node "+n.ID+" is down with tenants still assigned")
		}
	}
	if len(h.Problems) > 0 {
		h.Status = "degraded"
	}
	writeJSON(w, http.StatusOK, h)
}
