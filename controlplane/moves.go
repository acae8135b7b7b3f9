package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/placement"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/tracing"
)

// moveActivateTimeout bounds warming a moved tenant up on its new node.
const moveActivateTimeout = time.Minute

// MoveTenant moves tenant id to node to (or the best other node when to is
// empty): its node releases it (in-flight requests finish, final sync),
// the registry assigns it to the new node at the next epoch, and the new
// node opens it. Requests during the move are held by the gateways, not
// failed. Only the leader moves tenants; one move per tenant at a time.
func (c *ControlPlane) MoveTenant(ctx context.Context, id, to string) (cluster.Tenant, error) {
	if _, busy := c.moving.LoadOrStore(id, struct{}{}); busy {
		return cluster.Tenant{}, cluster.Errorf(cluster.ErrTenantMoving, "tenant %s is already moving", id)
	}
	defer c.moving.Delete(id)
	t, err := c.store.Tenant(id)
	if err != nil {
		return t, err
	}
	if t.State != cluster.TenantActive {
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)
	}
	if to, err = c.moveTarget(t, to); err != nil || to == t.Node {
		return t, err
	}
	if err := c.release(ctx, t); err != nil {
		return t, err
	}
	nt, err := c.assignTo(ctx, t, to)
	if err != nil {
		return t, err
	}
	c.warm(ctx, nt)
	return nt, nil
}

// moveTarget checks the requested target, or chooses one.
func (c *ControlPlane) moveTarget(t cluster.Tenant, to string) (string, error) {
	if to == "" {
		cands, err := c.candidates()
		if err != nil {
			return "", err
		}
		to, err = placement.Choose(cands, t.Node)
		if errors.Is(err, placement.ErrNoNode) {
			return "", cluster.Errorf(cluster.ErrNoNode, "no other tenant node can take tenant %s", t.ID)
		}
		return to, err
	}
	n, err := c.store.Node(to)
	if err != nil {
		return "", err
	}
	if n.State != cluster.NodeActive || !c.fleet.alive(n.ID, c.cfg.Lease, c.cfg.FailoverMargin) {
		return "", cluster.Errorf(cluster.ErrInvalidInput, "node %s is %s and cannot take tenants", to, n.State)
	}
	return to, nil
}

// release has the tenant's current node give it up. A node that is down
// (or whose lease ran out) has stopped by itself.
func (c *ControlPlane) release(ctx context.Context, t cluster.Tenant) error {
	if t.Node == "" {
		return nil
	}
	n, err := c.store.Node(t.Node)
	if err != nil || n.State == cluster.NodeDown || !c.fleet.alive(n.ID, c.cfg.Lease, c.cfg.FailoverMargin) {
		return nil
	}
	if err := c.orders.Release(ctx, n, t.ID, t.Epoch); err != nil {
		return fmt.Errorf("release tenant %s on %s: %w", t.ID, n.ID, err)
	}
	return nil
}

// warm asks the tenant's new node to open it now, in the background, in
// the trace of ctx (whose cancellation it does not share).
func (c *ControlPlane) warm(ctx context.Context, t cluster.Tenant) {
	n, err := c.store.Node(t.Node)
	if err != nil {
		return
	}
	parent := tracing.Detach(ctx)
	go func() {
		ctx, cancel := context.WithTimeout(parent, moveActivateTimeout)
		defer cancel()
		if err := c.orders.Activate(ctx, n, t.ID); err != nil {
			c.logger.Warn("warm up moved tenant", "tenant", t.ID, "tenant_node", n.ID, "error", err)
		}
	}()
}

// tenantsByNode lists the live tenants of each node, sorted.
func (c *ControlPlane) tenantsByNode() (map[string][]string, error) {
	ts, err := c.store.Tenants(store.TenantFilter{State: cluster.TenantActive})
	if err != nil {
		return nil, err
	}
	by := map[string][]string{}
	for _, t := range ts {
		if t.Node != "" {
			by[t.Node] = append(by[t.Node], t.ID)
		}
	}
	return by, nil
}

// DrainNode stops placing tenants on node id and moves its tenants away,
// in the background. It returns the planned moves.
func (c *ControlPlane) DrainNode(ctx context.Context, id string) ([]placement.Move, error) {
	n, err := c.store.Node(id)
	if err != nil {
		return nil, err
	}
	if n.State == cluster.NodeActive {
		if _, err := c.apply(ctx, store.CmdSetNodeState, "", store.SetNodeState{ID: id, State: cluster.NodeDraining}); err != nil {
			return nil, err
		}
		c.logger.Info("draining tenant node", "tenant_node", id)
	}
	by, err := c.tenantsByNode()
	if err != nil {
		return nil, err
	}
	cands, err := c.candidates()
	if err != nil {
		return nil, err
	}
	moves, err := placement.Drain(cands, id, by[id])
	if errors.Is(err, placement.ErrNoNode) {
		return moves, cluster.Errorf(cluster.ErrNoNode, "no other tenant node can take the tenants of %s", id)
	}
	c.runMoves(moves, func() { c.noteDrained(id) })
	return moves, err
}

// noteDrained publishes node.drained once draining node id holds no
// tenant: its operator may then stop it.
func (c *ControlPlane) noteDrained(id string) {
	n, err := c.store.Node(id)
	if err != nil || n.State != cluster.NodeDraining {
		return
	}
	by, err := c.tenantsByNode()
	if err != nil || len(by[id]) > 0 {
		return
	}
	c.logger.Info("tenant node drained", "tenant_node", id)
	c.recordEvents([]cluster.Event{{Type: store.EventNodeDrained, Node: id}})
}

// Rebalance moves tenants from the fullest nodes to the emptiest, in the
// background, and returns the planned moves.
func (c *ControlPlane) Rebalance(ctx context.Context, max int) ([]placement.Move, error) {
	by, err := c.tenantsByNode()
	if err != nil {
		return nil, err
	}
	cands, err := c.candidates()
	if err != nil {
		return nil, err
	}
	for i := range cands {
		cands[i].Assigned = len(by[cands[i].ID])
	}
	moves := placement.Rebalance(cands, by, max)
	c.runMoves(moves, nil)
	return moves, nil
}

// runMoves carries out moves one at a time in the background, then calls
// done (if any) unless the control plane is stopping.
func (c *ControlPlane) runMoves(moves []placement.Move, done func()) {
	moves = slices.Clone(moves)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, m := range moves {
			select {
			case <-c.quit:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), OrderTimeout)
			_, err := c.MoveTenant(ctx, m.Tenant, m.To)
			cancel()
			if err != nil {
				c.logger.Warn("planned move failed", "tenant", m.Tenant, "from", m.From, "to", m.To, "error", err)
			}
		}
		if done != nil {
			done()
		}
	}()
}
