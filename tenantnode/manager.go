// Package tenantnode runs tenants: each a complete PocketBase app with its
// own data directory, activated on its first request and evicted when idle
// or when the node is full, with its databases streamed to the object store
// by embedded Litestream.
//
// Invariants:
//   - One activation per tenant at a time: concurrent first requests share
//     it, and a tenant being stopped is not opened again until the stop
//     (app closed, final sync done) has finished.
//   - No node-wide lock is held across I/O: the manager's mutex guards only
//     its maps and counters; restore, bootstrap and shutdown run outside it,
//     so activating one tenant never blocks requests to another.
//   - A local copy is reused only when it belongs to the tenant's current
//     epoch on this node and its Litestream state is intact; otherwise the
//     node restores from the object store and continues in a new epoch, so
//     it never appends to a replica history it did not write.
//   - The app closes before its replication detaches (final sync).
package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tenantnode/cache"
)

// ControlPlane is what a tenant node needs from the control plane.
type ControlPlane interface {
	// Tenant returns the registry record of tenant id, or
	// cluster.ErrTenantNotFound.
	Tenant(ctx context.Context, id string) (cluster.Tenant, error)
	// AdvanceEpoch makes node the owner of t at epoch t.Epoch+1, recording
	// t.Epoch as the epoch to restore from. It fails with
	// cluster.ErrStaleVersion when t is no longer the current record.
	AdvanceEpoch(ctx context.Context, t cluster.Tenant, node string) (cluster.Tenant, error)
}

// Manager owns the active tenants of one node.
type Manager struct {
	cfg     Config
	objects storage.ObjectStore
	cp      ControlPlane
	repl    *storage.Replicator
	logger  *slog.Logger

	mu       sync.Mutex
	active   *cache.LRU[string, *entry]
	stopping map[string]chan struct{} // closed when that tenant's stop is done
	closed   bool

	activations atomic.Int64
	evictions   atomic.Int64

	wg   sync.WaitGroup
	quit chan struct{}
	once sync.Once
}

// Stats are a node's counters since start.
type Stats struct {
	Active      int   `json:"active"`
	Activations int64 `json:"activations"`
	Evictions   int64 `json:"evictions"`
}

// Stats returns the node's counters.
func (m *Manager) Stats() Stats {
	return Stats{Active: m.Active(), Activations: m.activations.Load(), Evictions: m.evictions.Load()}
}

// entry is a tenant slot: activating, active, or being stopped.
type entry struct {
	id    string
	ready chan struct{} // closed when activation ends; then inst or err is set
	inst  *instance
	err   error

	// Guarded by Manager.mu.
	refs     int           // requests in flight, realtime streams included
	streams  int           // realtime (SSE) connections among refs
	lastUsed time.Time     //
	evicting bool          // removed from active; waiting for refs to drain
	drained  chan struct{} // closed when refs reaches 0 while evicting
}

func (e *entry) isReady() bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// NewManager returns a tenant manager that restores from and replicates to
// objects and asks cp about tenants.
func NewManager(cfg Config, objects storage.ObjectStore, cp ControlPlane) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "tenantnode", "node", cfg.NodeID)
	repl, err := storage.NewReplicator(cfg.Replication, quietLogger(logger.With("component", "litestream")))
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:      cfg,
		objects:  objects,
		cp:       cp,
		repl:     repl,
		logger:   logger,
		active:   cache.New[string, *entry](),
		stopping: map[string]chan struct{}{},
		quit:     make(chan struct{}),
	}, nil
}

// Start starts replication and the idle janitor.
func (m *Manager) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.DataDir, 0o750); err != nil {
		return err
	}
	if err := m.repl.Open(ctx); err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	m.wg.Add(1)
	go m.janitor()
	return nil
}

// Stop stops every active tenant (final sync included) and waits. It is
// idempotent; requests arriving afterwards get cluster.ErrShuttingDown.
func (m *Manager) Stop(ctx context.Context) error {
	var err error
	m.once.Do(func() {
		close(m.quit)
		m.mu.Lock()
		m.closed = true
		victims := m.active.Values()
		for _, e := range victims {
			m.detachLocked(e)
		}
		m.mu.Unlock()
		m.stopAll(ctx, victims)
		m.wg.Wait()
		err = m.repl.Close(ctx)
	})
	return err
}

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
			m.stop(ctx, e)
		}()
	}
	wg.Wait()
}

// Active returns the number of active (or activating) tenants.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active.Len()
}

// IsActive reports whether tenant id is active on this node.
func (m *Manager) IsActive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.active.Peek(id)
	return ok && e.isReady() && e.err == nil
}

// Ready reports whether the node accepts tenants.
func (m *Manager) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return cluster.ErrShuttingDown
	}
	return nil
}

// acquire returns the active instance of tenant id, activating it if
// needed, and counts the caller in until release. stream marks a long-lived
// realtime connection.
func (m *Manager) acquire(ctx context.Context, id string, stream bool) (*entry, error) {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, cluster.ErrShuttingDown
	}
	e, ok := m.active.Get(id)
	if !ok {
		e = &entry{id: id, ready: make(chan struct{})}
		m.active.Add(id, e)
		wait := m.stopping[id]
		victims := m.pickVictimsLocked()
		m.wg.Add(1)
		go m.activate(e, wait)
		for _, v := range victims {
			m.wg.Add(1)
			go func() { defer m.wg.Done(); m.stop(context.Background(), v) }()
		}
	}
	e.refs++
	if stream {
		e.streams++
	}
	e.lastUsed = time.Now()
	m.mu.Unlock()

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
func (m *Manager) activate(e *entry, previousStop <-chan struct{}) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ActivationTimeout)
	defer cancel()
	if previousStop != nil {
		select {
		case <-previousStop:
		case <-ctx.Done():
		}
	}
	start := time.Now()
	inst, err := m.openTenant(ctx, e.id)
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
		if !errors.Is(err, cluster.ErrTenantNotFound) {
			m.logger.Error("tenant activation failed", "tenant", e.id, "error", err)
		}
		return
	}
	m.activations.Add(1)
	m.logger.Info("tenant activated", "tenant", e.id, "epoch", inst.tenant.Epoch, "duration", time.Since(start))
}

// openTenant looks the tenant up and opens it.
func (m *Manager) openTenant(ctx context.Context, id string) (*instance, error) {
	t, err := m.cp.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.State != cluster.TenantActive {
		return nil, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)
	}
	return m.open(ctx, t)
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
// replication makes its final sync.
func (m *Manager) stop(ctx context.Context, e *entry) {
	<-e.ready
	if e.inst != nil {
		m.drain(e)
		if err := m.closeInstance(ctx, e.inst); err != nil {
			m.logger.Error("tenant stop failed", "tenant", e.id, "error", err)
		} else {
			m.evictions.Add(1)
			m.logger.Info("tenant evicted", "tenant", e.id)
		}
	}
	m.mu.Lock()
	if ch := m.stopping[e.id]; ch != nil {
		close(ch)
		delete(m.stopping, e.id)
	}
	m.mu.Unlock()
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
// stop to finish. It reports whether the tenant was active.
func (m *Manager) Evict(ctx context.Context, id string) bool {
	m.mu.Lock()
	e, ok := m.active.Peek(id)
	if ok {
		m.detachLocked(e)
	}
	wait := m.stopping[id]
	m.mu.Unlock()
	if ok {
		m.stop(ctx, e)
	} else if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
	return ok
}

// quietLogger raises a logger's level to Warn unless it is already at Debug:
// Litestream logs every database's routine events at Info.
func quietLogger(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(minLevel{h: l.Handler(), min: slog.LevelWarn})
}

type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(a), min: m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{h: m.h.WithGroup(n), min: m.min} }
