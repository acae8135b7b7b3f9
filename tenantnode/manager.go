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
	"github.com/pbe/pbe/metrics"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tenantnode/cache"
)

// ControlPlane is what a tenant node needs from the control plane.
type ControlPlane interface {
	// Tenant returns the current registry record of tenant id (as the
	// leader knows it), or cluster.ErrTenantNotFound.
	Tenant(ctx context.Context, id string) (cluster.Tenant, error)
	// Assign returns tenant id's record after placing it on a node if it
	// has none.
	Assign(ctx context.Context, id string) (cluster.Tenant, error)
	// AdvanceEpoch makes node the owner of t at epoch t.Epoch+1, recording
	// t.Epoch as the epoch to restore from. It fails with
	// cluster.ErrStaleVersion when t is no longer the current record.
	AdvanceEpoch(ctx context.Context, t cluster.Tenant, node string) (cluster.Tenant, error)
	// RegisterNode records this node in the registry.
	RegisterNode(ctx context.Context, n cluster.Node) (cluster.Node, error)
	// Heartbeat renews this node's lease.
	Heartbeat(ctx context.Context, hb cluster.Heartbeat) (cluster.HeartbeatReply, error)
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
	// releasing holds tenants being given up for a move: they are refused
	// until the move is done. released remembers the epoch each was given
	// up at: the node never serves a tenant at that epoch (or an older
	// one) again. disowned tenants may not upload to their replica.
	releasing map[string]bool
	released  map[string]uint64
	disowned  map[string]bool

	lease    lease
	draining atomic.Bool

	activations atomic.Int64
	evictions   atomic.Int64
	requests    atomic.Int64 // since the last heartbeat
	loadAt      atomic.Int64 // unix nanos of the last heartbeat
	metrics     *metrics.TenantNode

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
		cfg:       cfg,
		objects:   objects,
		cp:        cp,
		repl:      repl,
		logger:    logger,
		active:    cache.New[string, *entry](),
		stopping:  map[string]chan struct{}{},
		releasing: map[string]bool{},
		released:  map[string]uint64{},
		disowned:  map[string]bool{},
		quit:      make(chan struct{}),
		metrics:   metrics.NewTenantNode(),
	}, nil
}

// Start registers the node with the control plane, takes its first lease
// and starts replication, lease renewal and the idle janitor.
func (m *Manager) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.DataDir, 0o750); err != nil {
		return err
	}
	if err := m.register(ctx); err != nil {
		return fmt.Errorf("register with the control plane: %w", err)
	}
	if err := m.repl.Open(ctx); err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	m.wg.Add(2)
	go m.janitor()
	go m.renewer()
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

// Ready reports whether the node accepts tenants: running, holding a
// lease and below capacity.
func (m *Manager) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return cluster.ErrShuttingDown
	case !m.lease.valid():
		return cluster.ErrNoLease
	case m.active.Len() > m.cfg.MaxTenants:
		return fmt.Errorf("%d active tenants, above the capacity of %d", m.active.Len(), m.cfg.MaxTenants)
	case m.draining.Load():
		return errors.New("draining: its tenants are moving to other nodes")
	}
	return nil
}
