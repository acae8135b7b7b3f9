package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pbe/pbe/cluster"
)

// lease is the node's right to serve its tenants. It is valid until a time
// counted on this machine's monotonic clock from when the heartbeat that
// renewed it was sent, minus a safety margin: the control plane counts the
// same lease from when it received the heartbeat and waits a failover
// margin more, so this node always stops first.
type lease struct {
	until atomic.Pointer[time.Time]
	// failure is why the last renewal failed; nil after one succeeds.
	failure atomic.Pointer[error]
}

func (l *lease) valid() bool {
	u := l.until.Load()
	return u != nil && time.Now().Before(*u)
}

// extend makes the lease valid until t, if that is later.
func (l *lease) extend(t time.Time) {
	for {
		cur := l.until.Load()
		if cur != nil && !t.After(*cur) {
			return
		}
		if l.until.CompareAndSwap(cur, &t) {
			return
		}
	}
}

// renewed records the outcome of a renewal.
func (l *lease) renewed(err error) {
	if err == nil {
		l.failure.Store(nil)
		return
	}
	l.failure.Store(&err)
}

// ControlPlaneReady reports whether the node holds its lease, that is
// whether the control plane answered one of its heartbeats within the
// lease. Without a lease the error says why the last renewal failed. It
// makes no call: it reads what the renewer last saw (at most one
// heartbeat interval old).
func (m *Manager) ControlPlaneReady(context.Context) error {
	if m.lease.valid() {
		return nil
	}
	if err := m.lease.failure.Load(); err != nil {
		return fmt.Errorf("%w (the last heartbeat failed: %v)", cluster.ErrNoLease, *err)
	}
	return cluster.ErrNoLease
}

// leaseSafety is the share of each lease the node gives up to absorb clock
// rate differences and the time a heartbeat takes.
const leaseSafety = 0.15

// register records this node with the control plane and takes its first
// lease; the node serves nothing before that.
func (m *Manager) register(ctx context.Context) error {
	n := cluster.Node{ID: m.cfg.NodeID, Addr: m.cfg.Addr, Capacity: m.cfg.MaxTenants}
	if _, err := m.cp.RegisterNode(ctx, n); err != nil {
		return err
	}
	return m.heartbeat(ctx)
}

// heartbeat reports to the control plane and renews the lease.
func (m *Manager) heartbeat(ctx context.Context) error {
	hb := m.report()
	sent := time.Now()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.HeartbeatInterval*3)
	defer cancel()
	reply, err := m.cp.Heartbeat(ctx, hb)
	if err != nil {
		return err
	}
	if reply.State == cluster.NodeDown || reply.LeaseMillis <= 0 {
		return errNodeDown
	}
	// Disowned tenants are fenced before the lease is extended: a node
	// waking from a pause past its lease must not upload, even for a
	// moment, to the replica of a tenant that has moved.
	for _, id := range reply.Disowned {
		m.logger.Warn("control plane says the node no longer owns a tenant: stopping it", "tenant", id)
		m.disown(id)
	}
	d := time.Duration(reply.LeaseMillis) * time.Millisecond
	m.lease.extend(sent.Add(d - time.Duration(float64(d)*leaseSafety)))
	m.draining.Store(reply.State == cluster.NodeDraining)
	return nil
}

var errNodeDown = errors.New("the control plane declared this node down")

// renewer keeps the lease renewed. When renewals fail until the lease
// lapses, every tenant is stopped (its replication refuses to upload), and
// the node registers again once the control plane answers.
func (m *Manager) renewer() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	lapsed := false
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
		err := m.heartbeat(context.Background())
		if errors.Is(err, errNodeDown) || errors.Is(err, cluster.ErrNotFound) {
			err = m.register(context.Background())
		}
		m.lease.renewed(err)
		switch {
		case err == nil && lapsed:
			lapsed = false
			m.logger.Info("lease renewed: serving again")
		case err != nil && !m.lease.valid() && !lapsed:
			lapsed = true
			m.logger.Error("lease lapsed: stopping every tenant", "error", err)
			m.stopEverything()
		case err != nil && !lapsed:
			m.logger.Warn("lease renewal failed", "error", err)
		}
	}
}

// stopEverything stops every active tenant (after a lapsed lease).
func (m *Manager) stopEverything() {
	m.mu.Lock()
	victims := m.active.Values()
	for _, e := range victims {
		m.detachLocked(e)
	}
	m.mu.Unlock()
	m.stopAll(context.Background(), victims)
}

// report describes the node and its active tenants for a heartbeat.
func (m *Manager) report() cluster.Heartbeat {
	hb := cluster.Heartbeat{Node: m.cfg.NodeID, Addr: m.cfg.Addr, Capacity: m.cfg.MaxTenants, Load: m.load()}
	m.mu.Lock()
	entries := m.active.Values()
	m.mu.Unlock()
	for _, e := range entries {
		if !e.isReady() || e.inst == nil {
			continue
		}
		hb.Active++
		hb.Tenants = append(hb.Tenants, e.inst.report())
	}
	return hb
}

// load is the node's request rate since the last report.
func (m *Manager) load() float64 {
	now := time.Now()
	n := m.requests.Swap(0)
	prev := m.loadAt.Swap(now.UnixNano())
	if prev == 0 {
		return 0
	}
	secs := now.Sub(time.Unix(0, prev)).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}
