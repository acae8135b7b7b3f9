package tenantnode

import (
	"context"
	"sync"
	"time"
)

// stopAll stops entries concurrently, a few at a time.
func (m *Manager) stopAll(ctx context.Context, entries []*entry) {
	const parallel = 8
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = m.stop(ctx, e)
		}()
	}
	wg.Wait()
}

// pickVictimsLocked removes from the active set the least recently used
// tenants past MaxTenants. A tenant with requests in flight is never
// chosen; one whose only refs are realtime streams may be (its clients are
// disconnected and reconnect). Past that the limit is soft.
func (m *Manager) pickVictimsLocked() []*entry {
	over := m.active.Len() - m.cfg.MaxTenants
	if over <= 0 {
		return nil
	}
	victims := m.active.Oldest(over, func(e *entry) bool {
		return e.isReady() && e.refs == e.streams
	})
	for _, v := range victims {
		m.detachLocked(v)
	}
	return victims
}

// detachLocked takes e out of the active set; stop must follow.
func (m *Manager) detachLocked(e *entry) {
	m.active.Remove(e.id)
	e.evicting = true
	if _, ok := m.stopping[e.id]; !ok {
		m.stopping[e.id] = make(chan struct{})
	}
	if e.refs > 0 {
		e.drained = make(chan struct{})
	}
}

// stop shuts a detached entry down: realtime clients are disconnected,
// in-flight requests drain (bounded by DrainTimeout), the app closes and
// replication makes its final sync, whose error it returns.
func (m *Manager) stop(ctx context.Context, e *entry) error {
	<-e.ready
	var err error
	if e.inst != nil {
		m.drain(e)
		if err = m.closeInstance(ctx, e.inst); err != nil {
			m.logger.Error("tenant stop failed", "tenant", e.id, "error", err)
		} else {
			m.evictions.Add(1)
			m.metrics.Evicted(e.id)
			m.logger.Info("tenant evicted", "tenant", e.id)
		}
	}
	m.metrics.DeleteTenant(e.id) // before a new activation can resolve them again
	m.mu.Lock()
	if ch := m.stopping[e.id]; ch != nil {
		close(ch)
		delete(m.stopping, e.id)
	}
	m.mu.Unlock()
	return err
}

// drain disconnects realtime clients and waits for in-flight requests.
func (m *Manager) drain(e *entry) {
	for _, c := range e.inst.app.SubscriptionsBroker().Clients() {
		c.Discard()
	}
	m.mu.Lock()
	drained := e.drained
	m.mu.Unlock()
	if drained == nil {
		return
	}
	select {
	case <-drained:
	case <-time.After(m.cfg.DrainTimeout):
		m.logger.Warn("tenant stopped with requests in flight", "tenant", e.id)
	}
}

// janitor evicts idle tenants.
func (m *Manager) janitor() {
	defer m.wg.Done()
	every := m.cfg.IdleTimeout / 4
	if every > 30*time.Second {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
			m.evictIdle()
		}
	}
}

func (m *Manager) evictIdle() {
	cutoff := time.Now().Add(-m.cfg.IdleTimeout)
	m.mu.Lock()
	victims := m.active.Oldest(m.active.Len(), func(e *entry) bool {
		return e.isReady() && e.refs == 0 && e.lastUsed.Before(cutoff)
	})
	for _, v := range victims {
		m.detachLocked(v)
	}
	m.mu.Unlock()
	m.stopAll(context.Background(), victims)
}

// Evict stops tenant id on this node if it is active and waits for the
// stop to finish. It reports whether the tenant was active, and the final
// sync's error.
func (m *Manager) Evict(ctx context.Context, id string) (bool, error) {
	m.mu.Lock()
	e, ok := m.active.Peek(id)
	if ok {
		m.detachLocked(e)
	}
	wait := m.stopping[id]
	m.mu.Unlock()
	if ok {
		return true, m.stop(ctx, e)
	}
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return false, nil
}
