package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/placement"
	"github.com/pbe/pbe/controlplane/store"
)

// Leases. A node counts its lease from when it sent the heartbeat that
// renewed it, and stops serving when it lapses; the leader counts from
// when it received the heartbeat and declares the node down only
// FailoverMargin after that, so a node always stops before its tenants can
// move. A new leader, which does not know when leases were renewed, treats
// every node as leased for a full lease after it took office.
const (
	DefaultLease          = 5 * time.Second
	DefaultFailoverMargin = 2 * time.Second
	// failoverTick is how often the leader looks for nodes whose lease ran out.
	failoverTick = 500 * time.Millisecond
)

// fleet is the leader's in-memory view of the tenant nodes: when each last
// renewed its lease and what it reported. It is not replicated: a new
// leader starts empty and waits a lease before acting on it.
type fleet struct {
	mu   sync.Mutex
	seen map[string]nodeReport
	// lastActive is when a node last reported each tenant active.
	lastActive map[string]time.Time
	// usages are the active tenants' recent reports (usage.go).
	usages map[string]*usageRing
	// quotaEvents is when a quota.exceeded event was last published for
	// a tenant and quota, so a tenant at its quota makes one an hour.
	quotaEvents map[string]time.Time
	leaderSince time.Time // zero when not leader
	// pending counts tenants assigned to a node since its last report.
	pending map[string]int
}

type nodeReport struct {
	at      time.Time
	hb      cluster.Heartbeat
	tenants map[string]cluster.TenantReport
}

func newFleet() *fleet {
	return &fleet{seen: map[string]nodeReport{}, pending: map[string]int{}, lastActive: map[string]time.Time{}, usages: map[string]*usageRing{}}
}

// lead resets the view for a new term of leadership (or its end).
func (f *fleet) lead(leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen, f.pending, f.lastActive, f.usages = map[string]nodeReport{}, map[string]int{}, map[string]time.Time{}, map[string]*usageRing{}
	f.leaderSince = time.Time{}
	if leader {
		f.leaderSince = time.Now()
	}
}

// quotaEventEvery spaces a tenant's quota.exceeded events per quota.
const quotaEventEvery = time.Hour

// LagEventSeconds is the replication lag past which a tenant's lag is
// published (replication.lagging, then replication.recovered).
const LagEventSeconds = 10

// record keeps a node's report and returns what changed since its last
// one: tenants activated or evicted on it, replication lagging or
// recovered. A node's first report since this leader took office gives
// nothing (its previous state is not known here).
func (f *fleet) record(hb cluster.Heartbeat) []cluster.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	tenants := make(map[string]cluster.TenantReport, len(hb.Tenants))
	now := time.Now()
	if f.quotaEvents == nil {
		f.quotaEvents = map[string]time.Time{}
	}
	for _, r := range hb.Tenants {
		tenants[r.ID] = r
		f.lastActive[r.ID] = now
		u := f.usages[r.ID]
		if u == nil {
			u = &usageRing{}
			f.usages[r.ID] = u
		}
		u.add(hb.Node, r, now)
	}
	var events []cluster.Event
	if prev, ok := f.seen[hb.Node]; ok {
		for id, r := range tenants {
			p, was := prev.tenants[id]
			switch {
			case !was:
				events = append(events, cluster.Event{Type: store.EventTenantActivated, Tenant: id, Node: hb.Node})
			case r.LagSeconds > LagEventSeconds && p.LagSeconds <= LagEventSeconds:
				events = append(events, cluster.Event{Type: store.EventReplicationLagging, Tenant: id, Node: hb.Node, Data: map[string]any{"lag_seconds": r.LagSeconds}})
			case r.LagSeconds <= LagEventSeconds && p.LagSeconds > LagEventSeconds:
				events = append(events, cluster.Event{Type: store.EventReplicationRecovered, Tenant: id, Node: hb.Node})
			}
			if was {
				for _, q := range []struct {
					kind      string
					now, then uint64
				}{{cluster.QuotaRequestsPerDay, r.RequestQuotaRefusals, p.RequestQuotaRefusals}, {cluster.QuotaStorageBytes, r.StorageQuotaRefusals, p.StorageQuotaRefusals}} {
					key := id + "/" + q.kind
					if q.now > q.then && now.Sub(f.quotaEvents[key]) >= quotaEventEvery {
						f.quotaEvents[key] = now
						events = append(events, cluster.Event{Type: store.EventQuotaExceeded, Tenant: id, Node: hb.Node,
							Data: map[string]any{"quota": q.kind, "refused": q.now - q.then}})
					}
				}
			}
		}
		for id := range prev.tenants {
			if _, still := tenants[id]; !still {
				if u := f.usages[id]; u != nil && u.node == hb.Node {
					delete(f.usages, id)
				}
				events = append(events, cluster.Event{Type: store.EventTenantEvicted, Tenant: id, Node: hb.Node})
			}
		}
	}
	hb.Tenants = nil
	f.seen[hb.Node] = nodeReport{at: time.Now(), hb: hb, tenants: tenants}
	f.pending[hb.Node] = 0
	return events
}

// liveness tells whether a node holds a lease, as far as the leader knows:
// alive if it renewed within lease+margin, or if the leader took office
// too recently to know.
func (f *fleet) alive(id string, lease, margin time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.seen[id]; ok && time.Since(r.at) <= lease+margin {
		return true
	}
	return !f.leaderSince.IsZero() && time.Since(f.leaderSince) <= lease+margin
}

// settled reports whether the leader has led long enough to declare nodes
// down: every lease granted by an earlier leader has run out.
func (f *fleet) settled(lease, margin time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.leaderSince.IsZero() && time.Since(f.leaderSince) > lease+margin
}

// idle reports whether no node has reported tenant active for longer than
// d, counting from when this leader took office at the earliest.
func (f *fleet) idle(tenant string, d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leaderSince.IsZero() {
		return false
	}
	last := f.leaderSince
	if t, ok := f.lastActive[tenant]; ok && t.After(last) {
		last = t
	}
	return time.Since(last) > d
}

// tenantReport returns what node last reported about tenant.
func (f *fleet) tenantReport(node, tenant string) (cluster.TenantReport, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.seen[node].tenants[tenant]
	return r, ok
}

func (f *fleet) assigned(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[id]++
}

// placed notes that tenant was just given a node: it is about to be
// active, so it is not idle, whatever the last heartbeats said (without
// this, a tenant opened from its archive could be archived again before a
// node had reported it active).
func (f *fleet) placed(tenant string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastActive[tenant] = time.Now()
}

// candidates describes the fleet for placement.
func (c *ControlPlane) candidates() ([]placement.Candidate, error) {
	nodes, err := c.store.Nodes()
	if err != nil {
		return nil, err
	}
	out := make([]placement.Candidate, 0, len(nodes))
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	for _, n := range nodes {
		r := c.fleet.seen[n.ID]
		alive := n.State != cluster.NodeDown &&
			((!r.at.IsZero() && time.Since(r.at) <= c.cfg.Lease+c.cfg.FailoverMargin) ||
				(!c.fleet.leaderSince.IsZero() && time.Since(c.fleet.leaderSince) <= c.cfg.Lease+c.cfg.FailoverMargin))
		out = append(out, placement.Candidate{
			ID: n.ID, Accepting: n.State == cluster.NodeActive, Alive: alive, Capacity: n.Capacity,
			Assigned: r.hb.Active + c.fleet.pending[n.ID], Load: r.hb.Load,
		})
	}
	return out, nil
}

// Heartbeat renews node hb.Node's lease (on the leader) and tells it which
// of its reported tenants it no longer owns.
func (c *ControlPlane) Heartbeat(ctx context.Context, hb cluster.Heartbeat) (cluster.HeartbeatReply, error) {
	if !c.raft.IsLeader() {
		return cluster.HeartbeatReply{}, cluster.Errorf(cluster.ErrNotLeader, "heartbeats go to the leader")
	}
	n, err := c.store.Node(hb.Node)
	if err != nil {
		return cluster.HeartbeatReply{}, err
	}
	reports := hb.Tenants
	if events := c.fleet.record(hb); len(events) > 0 {
		c.recordEvents(events)
	}
	reply := cluster.HeartbeatReply{LeaseMillis: c.cfg.Lease.Milliseconds(), State: n.State}
	if n.State == cluster.NodeDown {
		reply.LeaseMillis = 0 // re-register first
	}
	for _, tr := range reports {
		t, err := c.store.Tenant(tr.ID)
		if err != nil || t.State != cluster.TenantActive || t.Node != hb.Node || t.Epoch != tr.Epoch {
			reply.Disowned = append(reply.Disowned, tr.ID)
		}
	}
	return reply, nil
}

// recordEvents publishes events the leader saw outside the state machine,
// in the background: a heartbeat does not wait for them.
func (c *ControlPlane) recordEvents(events []cluster.Event) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
		defer cancel()
		if _, err := c.apply(ctx, store.CmdRecordEvents, "", store.RecordEvents{Events: events}); err != nil {
			c.logger.Warn("record node events", "events", len(events), "error", err)
		}
	}()
}

// RegisterNode records a tenant node (or its new address and capacity).
func (c *ControlPlane) RegisterNode(ctx context.Context, n cluster.Node) (cluster.Node, error) {
	res, err := c.apply(ctx, store.CmdRegisterNode, "", store.RegisterNode{Node: n})
	if err != nil {
		return cluster.Node{}, err
	}
	c.logger.Info("tenant node registered", "tenant_node", n.ID, "addr", n.Addr, "capacity", n.Capacity)
	return res.(cluster.Node), nil
}

// Assign returns tenant id's registry record, first assigning it to the
// best node if it has none or its node is down. Only the leader assigns.
func (c *ControlPlane) Assign(ctx context.Context, id string) (cluster.Tenant, error) {
	t, err := c.store.Tenant(id)
	if err != nil {
		return t, err
	}
	if t.State != cluster.TenantActive {
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)
	}
	if t.Node != "" {
		if n, err := c.store.Node(t.Node); err == nil && n.State != cluster.NodeDown {
			return t, nil
		}
	}
	if !c.raft.IsLeader() {
		return t, cluster.Errorf(cluster.ErrNotLeader, "tenant %s needs a node and only the leader assigns one", id)
	}
	return c.reassign(ctx, t, "")
}

// reassign moves t to the best node other than exclude, at a new epoch.
func (c *ControlPlane) reassign(ctx context.Context, t cluster.Tenant, exclude string) (cluster.Tenant, error) {
	cands, err := c.candidates()
	if err != nil {
		return t, err
	}
	to, err := placement.Choose(cands, exclude)
	if errors.Is(err, placement.ErrNoNode) {
		return t, cluster.Errorf(cluster.ErrNoNode, "no tenant node can take tenant %s now; retry shortly", t.ID)
	}
	if err != nil {
		return t, err
	}
	return c.assignTo(ctx, t, to)
}

// assignTo makes node to the owner of t at the next epoch.
func (c *ControlPlane) assignTo(ctx context.Context, t cluster.Tenant, to string) (cluster.Tenant, error) {
	epoch, restore := t.Epoch+1, t.Epoch
	res, err := c.apply(ctx, store.CmdUpdateTenant, "", store.UpdateTenant{
		ID: t.ID, ExpectedVersion: t.Version, Node: &to, Epoch: &epoch, RestoreEpoch: &restore,
	})
	if err != nil {
		return t, fmt.Errorf("assign tenant %s to %s: %w", t.ID, to, err)
	}
	c.fleet.assigned(to)
	c.fleet.placed(t.ID)
	nt := res.(cluster.Tenant)
	c.logger.Info("tenant assigned", "tenant", t.ID, "owner", to, "epoch", nt.Epoch, "previous_owner", t.Node)
	return nt, nil
}

// failover declares down, on the leader, every node whose lease ran out,
// and moves its tenants to live nodes.
func (c *ControlPlane) failover(ctx context.Context) {
	c.everyTickAsLeader(ctx, failoverTick, c.failoverOnce)
}

// failoverOnce is one round of failover.
func (c *ControlPlane) failoverOnce(ctx context.Context) {
	if !c.fleet.settled(c.cfg.Lease, c.cfg.FailoverMargin) {
		return
	}
	nodes, err := c.store.Nodes()
	if err != nil {
		return
	}
	for _, n := range nodes {
		if n.State == cluster.NodeDown || c.fleet.alive(n.ID, c.cfg.Lease, c.cfg.FailoverMargin) {
			continue
		}
		if _, err := c.apply(ctx, store.CmdSetNodeState, "", store.SetNodeState{ID: n.ID, State: cluster.NodeDown, ExpectedVersion: n.Version}); err != nil {
			c.logger.Warn("declare node down", "tenant_node", n.ID, "error", err)
			continue
		}
		c.logger.Warn("tenant node lost its lease: moving its tenants", "tenant_node", n.ID)
		c.orphans.Store(true)
	}
	if c.orphans.Load() {
		c.orphans.Store(!c.rehome(ctx))
	}
}

// rehome moves every tenant of a down node to a live one. It reports
// whether none was left behind.
func (c *ControlPlane) rehome(ctx context.Context) bool {
	down := map[string]bool{}
	nodes, _ := c.store.Nodes()
	for _, n := range nodes {
		if n.State == cluster.NodeDown {
			down[n.ID] = true
		}
	}
	ts, err := c.store.Tenants(store.TenantFilter{State: cluster.TenantActive})
	if err != nil {
		return false
	}
	done := true
	for _, t := range ts {
		if t.Node == "" || !down[t.Node] {
			continue
		}
		if _, err := c.reassign(ctx, t, t.Node); err != nil {
			c.logger.Warn("move tenant off a down node", "tenant", t.ID, "error", err)
			done = false
		}
	}
	return done
}
