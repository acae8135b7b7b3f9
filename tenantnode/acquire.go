package tenantnode

import (
	"context"
	"errors"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// acquire returns the active instance of tenant id, activating it if
// needed, and counts the caller in until release. epoch, when not zero, is
// the ownership epoch the caller routed at; stream marks a long-lived
// realtime connection.
func (m *Manager) acquire(ctx context.Context, id string, epoch uint64, stream bool) (*entry, error) {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		e, err := m.enter(ctx, id, stream)
		if err != nil {
			return nil, err
		}
		select {
		case <-e.ready:
		case <-ctx.Done():
			m.release(e, stream)
			return nil, ctx.Err()
		}
		if e.err != nil {
			m.release(e, stream)
			return nil, e.err
		}
		have := e.inst.tenant.Epoch
		switch {
		case epoch == 0 || epoch == have:
			return e, nil
		case epoch < have || attempt > 0:
			m.release(e, stream)
			return nil, cluster.Errorf(cluster.ErrNotOwner, "tenant %s is at epoch %d here, not %d", id, have, epoch)
		}
		// The caller knows a newer assignment than the open instance: reopen.
		m.release(e, stream)
		m.Evict(ctx, id)
	}
}

// enter finds or starts the tenant's entry and counts the caller in. An
// activation it starts outlives ctx but joins its trace.
func (m *Manager) enter(ctx context.Context, id string, stream bool) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return nil, cluster.ErrShuttingDown
	case !m.lease.valid():
		return nil, cluster.Errorf(cluster.ErrNoLease, "node %s has no lease from the control plane; retry shortly", m.cfg.NodeID)
	case m.releasing[id]:
		return nil, cluster.Errorf(cluster.ErrTenantMoving, "tenant %s is moving to another node; retry shortly", id)
	}
	e, ok := m.active.Get(id)
	if !ok {
		e = &entry{id: id, ready: make(chan struct{})}
		m.active.Add(id, e)
		wait := m.stopping[id]
		victims := m.pickVictimsLocked()
		m.wg.Add(1)
		go m.activate(tracing.Detach(ctx), e, wait)
		for _, v := range victims {
			m.wg.Add(1)
			go func() { defer m.wg.Done(); _ = m.stop(context.Background(), v) }()
		}
	}
	e.refs++
	if stream {
		e.streams++
	}
	e.lastUsed = time.Now()
	m.requests.Add(1)
	return e, nil
}

// release ends what acquire started.
func (m *Manager) release(e *entry, stream bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if stream {
		e.streams--
	}
	e.lastUsed = time.Now()
	if e.refs == 0 && e.evicting && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
}

// activate opens tenant e.id after any previous stop of it has finished.
// parent carries no cancellation, only the trace of the request that
// started the activation.
func (m *Manager) activate(parent context.Context, e *entry, previousStop <-chan struct{}) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(parent, m.cfg.ActivationTimeout)
	defer cancel()
	if previousStop != nil {
		select {
		case <-previousStop:
		case <-ctx.Done():
		}
	}
	start := time.Now()
	activated := m.metrics.ActivationStarted()
	inst, err := m.openTenant(ctx, e.id)
	if err == nil {
		// Counted before close(e.ready): a request that waited on the
		// activation must see it in Stats once it has finished.
		m.activations.Add(1)
		kind := activationKind(inst.from)
		activated(kind)
		if !m.cfg.DisableMetrics {
			inst.metrics = m.metrics.Tenant(e.id)
			m.metrics.Activated(e.id, kind, time.Since(start))
		}
	} else {
		activated("")
	}
	m.mu.Lock()
	e.inst, e.err = inst, err
	if err != nil {
		if cur, ok := m.active.Peek(e.id); ok && cur == e {
			m.active.Remove(e.id)
		}
	}
	m.mu.Unlock()
	close(e.ready)
	if err != nil {
		if !errors.Is(err, cluster.ErrTenantNotFound) && !errors.Is(err, cluster.ErrNotOwner) {
			m.logger.Error("tenant activation failed", "tenant", e.id, "error", err)
		}
		return
	}
	m.logger.Info("tenant activated", "tenant", e.id, "epoch", inst.tenant.Epoch, "duration", time.Since(start))
}

// openTenant checks with the control plane that this node owns the tenant
// (placing it first if it has no node) and opens it.
func (m *Manager) openTenant(ctx context.Context, id string) (*instance, error) {
	t, err := m.cp.Tenant(ctx, id)
	if err == nil && t.State == cluster.TenantActive && t.Node == "" {
		t, err = m.cp.Assign(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	if t.State != cluster.TenantActive {
		return nil, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)
	}
	if t.Node != m.cfg.NodeID {
		return nil, cluster.Errorf(cluster.ErrNotOwner, "tenant %s is served by node %s, not %s", id, t.Node, m.cfg.NodeID)
	}
	m.mu.Lock()
	gone, wasReleased := m.released[id]
	if !wasReleased || t.Epoch > gone {
		delete(m.released, id)
		delete(m.disowned, id)
	}
	m.mu.Unlock()
	if wasReleased && t.Epoch <= gone {
		return nil, cluster.Errorf(cluster.ErrTenantMoving, "tenant %s was released at epoch %d; waiting for its new node", id, gone)
	}
	return m.open(ctx, t)
}

// Activate opens tenant id now (if this node owns it), so that its first
// request does not wait for a restore.
func (m *Manager) Activate(ctx context.Context, id string) error {
	e, err := m.acquire(ctx, id, 0, false)
	if err != nil {
		return err
	}
	m.release(e, false)
	return nil
}

// Release gives tenant id up for a move: new requests are refused (the
// gateways hold and retry them), in-flight ones finish, the app closes and
// replication makes its final sync. The node never serves the tenant at
// epoch (or before) again. It returns once the replica is complete, or the
// final sync's error (the move must then not go ahead).
func (m *Manager) Release(ctx context.Context, id string, epoch uint64) error {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return err
	}
	m.mu.Lock()
	m.releasing[id] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.releasing, id)
		if m.released[id] < epoch {
			m.released[id] = epoch
		}
		m.mu.Unlock()
	}()
	if _, err := m.Evict(ctx, id); err != nil {
		return err
	}
	m.logger.Info("tenant released", "tenant", id, "epoch", epoch)
	return nil
}

// disown stops a tenant the control plane says this node no longer owns.
// Its replication may not upload anything more.
func (m *Manager) disown(id string) {
	m.mu.Lock()
	m.disowned[id] = true
	m.mu.Unlock()
	go func() {
		if _, err := m.Evict(context.Background(), id); err != nil {
			m.logger.Warn("stop disowned tenant", "tenant", id, "error", err)
		}
	}()
}

// mayUpload reports whether tenant id's replication may write to the
// object store: only while the node holds its lease and owns the tenant.
func (m *Manager) mayUpload(id string) bool {
	if !m.lease.valid() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.disowned[id]
}
