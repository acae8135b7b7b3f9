package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/raft"
	"github.com/pbe/pbe/controlplane/store"
)

// RaftStatus is the answer of GET /api/cp/raft/status.
type RaftStatus struct {
	raft.Status
	// Members are the control-plane nodes with their API addresses, as
	// published in the registry.
	Members []cluster.Member `json:"members"`
}

func (c *ControlPlane) handleRaftStatus(w http.ResponseWriter, r *http.Request) {
	members, err := c.store.Members()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, RaftStatus{Status: c.raft.Status(), Members: members})
}

// handleRaftSnapshot takes a snapshot on the node that receives it (not
// forwarded) and answers with its status.
func (c *ControlPlane) handleRaftSnapshot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if err := c.raft.Snapshot(r.Context()); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "snapshot failed: %v", err))
		return
	}
	c.logger.Info("snapshot taken", "duration", time.Since(start))
	c.handleRaftStatus(w, r)
}

// JoinRequest asks the cluster to add a node as a voter.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// ClusterID is the cluster the node already belongs to, if any.
	ClusterID string `json:"cluster_id,omitempty"`
}

// JoinResponse tells a joining node which cluster it joined.
type JoinResponse struct {
	ClusterID string `json:"cluster_id"`
	LeaderID  string `json:"leader_id"`
}

func (req JoinRequest) validate() error {
	if req.ID == "" || len(req.ID) > store.MaxMemberIDLen {
		return cluster.Errorf(cluster.ErrInvalidInput, `field "id" must be a node id of 1 to %d bytes`, store.MaxMemberIDLen)
	}
	for field, addr := range map[string]string{"raft_addr": req.RaftAddr, "api_addr": req.APIAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return cluster.Errorf(cluster.ErrInvalidInput, "field %q must be host:port", field)
		}
	}
	return nil
}

func (c *ControlPlane) handleRaftJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := req.validate(); err != nil {
		cluster.WriteError(w, err)
		return
	}
	theirs, err := c.joinerClusterID(r, req)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	ours := c.raft.ClusterID()
	if theirs != "" && ours != "" && theirs != ours {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrClusterMismatch, "node %s belongs to cluster %s, not %s; wipe its data directory to join this one", req.ID, theirs, ours))
		return
	}
	if err := c.raft.AddVoter(r.Context(), req.ID, req.RaftAddr); err != nil {
		cluster.WriteError(w, raftError(err))
		return
	}
	m := cluster.Member{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr}
	if _, err := c.apply(r.Context(), store.CmdSetMember, "", store.SetMember{Member: m}); err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.logger.Info("control-plane node joined", "member", req.ID, "raft_addr", req.RaftAddr)
	writeJSON(w, http.StatusOK, JoinResponse{ClusterID: ours, LeaderID: c.cfg.NodeID})
}

// joinerClusterID returns the cluster a joining node already belongs to. A
// node joining by itself (--join, cluster secret) states it; for a join an
// operator asks for, the node is asked directly, so a node of another
// cluster cannot be added by mistake.
func (c *ControlPlane) joinerClusterID(r *http.Request, req JoinRequest) (string, error) {
	if p, _ := auth.FromContext(r.Context()); p.Kind == auth.KindNode {
		return req.ClusterID, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st, err := NewHTTPClient("http://"+req.APIAddr, c.cfg.ClusterSecret).WithRetry(0).RaftStatus(ctx)
	if err != nil {
		return "", cluster.Errorf(cluster.ErrUnavailable, "could not verify node %s at %s before adding it: %v", req.ID, req.APIAddr, err)
	}
	if st.NodeID != req.ID {
		return "", cluster.Errorf(cluster.ErrInvalidInput, "the node at %s is %q, not %q", req.APIAddr, st.NodeID, req.ID)
	}
	return st.ClusterID, nil
}

// RemoveRequest asks the cluster to remove a node.
type RemoveRequest struct {
	ID string `json:"id"`
}

func (c *ControlPlane) handleRaftRemove(w http.ResponseWriter, r *http.Request) {
	var req RemoveRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.ID == "" {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "id" is required`))
		return
	}
	if !c.isVoter(req.ID) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotFound, "node %q is not a member of this cluster", req.ID))
		return
	}
	if err := c.raft.RemoveServer(r.Context(), req.ID); err != nil {
		cluster.WriteError(w, raftError(err))
		return
	}
	if _, err := c.apply(r.Context(), store.CmdRemoveMember, "", store.RemoveMember{ID: req.ID}); err != nil && !errors.Is(err, cluster.ErrNotFound) {
		c.logger.Warn("forget removed member", "member", req.ID, "error", err)
	}
	c.logger.Info("control-plane node removed", "member", req.ID)
	writeJSON(w, http.StatusOK, map[string]string{"removed": req.ID})
}

func (c *ControlPlane) isVoter(id string) bool {
	for _, p := range c.raft.Status().Peers {
		if p.ID == id {
			return true
		}
	}
	return false
}

// raftError turns a membership-change failure into an API error.
func raftError(err error) error {
	if errors.Is(err, raft.ErrClusterMismatch) {
		return cluster.Errorf(cluster.ErrClusterMismatch, "%v", err)
	}
	if _, ok := cluster.AsError(err); ok {
		return err
	}
	return cluster.Errorf(cluster.ErrUnavailable, "membership change failed: %v; retry shortly", err)
}

// joinRetryInterval is how long a joining node waits between attempts.
const joinRetryInterval = time.Second

// join asks the members listed in Config.Join to add this node, until one
// does or ctx ends.
func (c *ControlPlane) join(ctx context.Context) error {
	req := JoinRequest{ID: c.cfg.NodeID, RaftAddr: c.raft.Addr(), APIAddr: c.cfg.APIAddr, ClusterID: c.raft.ClusterID()}
	body, _ := json.Marshal(req)
	hc := &http.Client{Timeout: 15 * time.Second}
	for {
		for _, base := range c.cfg.Join {
			err := c.joinVia(ctx, hc, base, body)
			if err == nil {
				return nil
			}
			var ce *cluster.Error
			if errors.As(err, &ce) && (ce.Code == cluster.ErrClusterMismatch.Code || ce.Code == cluster.ErrUnauthorized.Code) {
				return fmt.Errorf("join %s: %w", base, err)
			}
			c.logger.Warn("join attempt failed", "via", base, "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join cluster: %w", ctx.Err())
		case <-time.After(joinRetryInterval):
		}
	}
}

func (c *ControlPlane) joinVia(ctx context.Context, hc *http.Client, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/api/cp/raft/join", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.cfg.ClusterSecret)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer closeBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return decodeErrorBody(resp)
	}
	var jr JoinResponse
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil {
		return err
	}
	c.logger.Info("joined control-plane cluster", "via", base, "cluster_id", jr.ClusterID, "leader", jr.LeaderID)
	return nil
}

// decodeErrorBody turns a platform error response into a *cluster.Error.
func decodeErrorBody(resp *http.Response) error {
	var e cluster.ErrorBody
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) != nil || e.Code == "" {
		return fmt.Errorf("%s", resp.Status)
	}
	return &cluster.Error{Code: e.Code, Message: e.Message}
}
