package tenantnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/pocketbase/pocketbase/core"
	"go.opentelemetry.io/otel/attribute"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/internal/atomicfile"
	"github.com/pbe/pbe/metrics"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tenantnode/hooks"
	"github.com/pbe/pbe/tracing"
)

// replicatedDBs are the tenant databases streamed to the object store.
var replicatedDBs = []string{"data.db", "auxiliary.db"}

// instance is one active tenant: its PocketBase app, the handler serving
// its API and admin UI, and its replicated databases.
type instance struct {
	tenant  cluster.Tenant
	paths   tenantPaths
	app     *core.BaseApp
	handler http.Handler
	dbs     []*litestream.DB // data.db first
	// inSyncAt is when the object store last held everything (unix nanos).
	inSyncAt atomic.Int64
	// wroteAt is when a record was last written (unix nanos): a write
	// after the replica's last successful sync is not in the object store
	// yet, whatever Litestream's positions say.
	wroteAt atomic.Int64
	// syncWrites: the tenant's durability is sync (it can change while
	// the tenant is active).
	syncWrites atomic.Bool
	// quota is the tenant's suspension and quotas, and what it has used;
	// like syncWrites it follows UpdateTenant, while tenant stays the
	// record the instance was opened with.
	quota *quotaState
	// from is where the data came from when the instance opened.
	from origin
	// metrics are the tenant's pre-resolved series; nil when the node
	// records no per-request metrics. Set before the instance is ready.
	metrics *metrics.Tenant
	// hooks runs the tenant's JavaScript hooks; nil when the node runs none.
	hooks *hooks.Pool
	// fence admits the replicas' writes; closed once replication stops.
	fence *fence
}

// tenantPaths is a tenant's local cache directory:
//
//	{DataDir}/tenants/{id}/pb_data/     PocketBase's data dir (data.db, auxiliary.db, storage/)
//	{DataDir}/tenants/{id}/litestream/  Litestream's local state (kept out of PocketBase backups)
//	{DataDir}/tenants/{id}/state.json   which epoch the local copy belongs to
type tenantPaths struct {
	dir, pbData, meta, state string
}

func (m *Manager) paths(id string) tenantPaths {
	dir := filepath.Join(m.cfg.DataDir, "tenants", id)
	return tenantPaths{
		dir:    dir,
		pbData: filepath.Join(dir, "pb_data"),
		meta:   filepath.Join(dir, "litestream"),
		state:  filepath.Join(dir, "state.json"),
	}
}

// localState records which owner epoch the local copy was written at, and
// whether its replication was shut down cleanly (final sync done). After
// an unclean stop (kill -9, power loss) the local database is intact
// (SQLite's WAL) but Litestream's own state may not match the replica, and
// resuming that replica history has produced corrupt restores: the node
// then starts a new epoch with a fresh snapshot instead.
type localState struct {
	Epoch uint64 `json:"epoch"`
	Node  string `json:"node"`
	Clean bool   `json:"clean"`
}

// tenantMetadata is written to the object store once a tenant's first
// replica is durable. Its presence means "this tenant has data": a tenant
// with metadata but no replica is never opened empty.
type tenantMetadata struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

// open activates tenant t on this node: it reuses the local copy when it is
// provably current, otherwise restores from the object store, then opens the
// app, attaches replication and builds the handler.
func (m *Manager) open(ctx context.Context, t cluster.Tenant) (*instance, error) {
	p := m.paths(t.ID)
	rctx, span := tracing.Start(ctx, "tenant.restore")
	t, origin, err := m.prepareLocal(rctx, t, p)
	if err == nil {
		if err = m.linkFiles(t.ID, p); err != nil {
			err = fmt.Errorf("open tenant %s: uploaded files: %w", t.ID, err)
		}
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pbe.activation", activationKind(origin)), attribute.Int64("pbe.epoch", int64(t.Epoch)))
	}
	tracing.Finish(span, err)
	if err != nil {
		return nil, err
	}
	bctx, span := tracing.Start(ctx, "tenant.bootstrap")
	inst, err := m.bootstrap(bctx, t, p, origin)
	tracing.Finish(span, err)
	return inst, err
}

// bootstrap opens the PocketBase app of t's prepared local copy and
// completes the open (startInstance).
func (m *Manager) bootstrap(ctx context.Context, t cluster.Tenant, p tenantPaths, origin origin) (*instance, error) {
	app, err := openApp(p.pbData, t.ID, m.cfg)
	if err != nil {
		return nil, fmt.Errorf("open tenant %s: %w", t.ID, err)
	}
	inst := &instance{tenant: t, paths: p, app: app, from: origin}
	// What it opened from is in the object store (or, for a new tenant,
	// there is nothing yet): the lag counts from here until a report finds
	// the replica caught up.
	inst.inSyncAt.Store(time.Now().UnixNano())
	if err := m.startInstance(ctx, inst, origin); err != nil {
		m.closeInstance(context.WithoutCancel(ctx), inst)
		return nil, fmt.Errorf("open tenant %s: %w", t.ID, err)
	}
	return inst, nil
}

// origin says where an opened tenant's data came from.
type origin int

const (
	// fromLocal: the local copy, continuing its replica history.
	fromLocal origin = iota
	// fromLocalNewEpoch: the local copy, which may hold writes no replica
	// has, continuing in a new epoch.
	fromLocalNewEpoch
	// fromStore: restored from the object store, continuing in a new epoch.
	fromStore
	// fresh: a tenant that has never been written.
	fresh
)

// startInstance completes an open: settings of a new tenant, replication,
// the first durable copy, the local state marker and the handler.
func (m *Manager) startInstance(ctx context.Context, inst *instance, from origin) error {
	t, p := inst.tenant, inst.paths
	if from == fresh {
		if err := m.initSettings(inst.app, t); err != nil {
			return err
		}
	}
	if err := m.attach(inst); err != nil {
		return err
	}
	inst.bindDurability()
	if err := m.bindFiles(inst); err != nil {
		return err
	}
	q, err := openQuota(inst.app, p.pbData, t, m.logger)
	if err != nil {
		return err
	}
	inst.quota = q
	if !m.cfg.DisableHooks {
		hp, err := hooks.Attach(inst.app, m.cfg.Hooks, m.logger.With("tenant", t.ID))
		if err != nil {
			return fmt.Errorf("hooks: %w", err)
		}
		inst.hooks = hp
	}
	if from == fresh || from == fromLocalNewEpoch {
		// The object store lacks this data (a new tenant needs its metadata
		// to follow a replica; a local copy may hold unreplicated writes):
		// make the new epoch's first copy durable before serving. A tenant
		// restored from the store serves at once; until its new epoch has a
		// snapshot, restores fall back to the epoch it came from.
		for _, db := range inst.dbs {
			if err := db.SyncAndWait(ctx); err != nil {
				return fmt.Errorf("first sync: %w", err)
			}
		}
	}
	if from == fresh {
		if err := m.writeMetadata(ctx, t); err != nil {
			return err
		}
	}
	if err := writeState(p.state, localState{Epoch: t.Epoch, Node: m.cfg.NodeID, Clean: false}); err != nil {
		return err
	}
	h, err := buildHandler(inst.app, inst.hooks)
	if err != nil {
		return fmt.Errorf("build handler: %w", err)
	}
	inst.handler = h
	inst.quota.start()
	return nil
}

// prepareLocal makes the local copy of t ready to open. It returns the
// tenant record to write under (with a new epoch when this node must start a
// new replica history) and where the data came from.
func (m *Manager) prepareLocal(ctx context.Context, t cluster.Tenant, p tenantPaths) (cluster.Tenant, origin, error) {
	st, _ := readState(p.state)
	ours := st.Epoch == t.Epoch && st.Node == m.cfg.NodeID && t.Node == m.cfg.NodeID
	if ours && exists(filepath.Join(p.pbData, "data.db")) {
		if st.Clean && exists(p.meta) {
			return t, fromLocal, nil // the normal restart and re-activation path
		}
		// The local database is the newest copy but Litestream's state is
		// gone or suspect: never continue that replica history.
		if err := os.RemoveAll(p.meta); err != nil {
			return t, fromLocal, err
		}
		m.logger.Warn("local copy was not shut down cleanly: continuing in a new epoch", "tenant", t.ID, "epoch", t.Epoch)
		t, err := m.cp.AdvanceEpoch(ctx, t, m.cfg.NodeID)
		return t, fromLocalNewEpoch, err
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return t, fromStore, fmt.Errorf("clear local copy of %s: %w", t.ID, err)
	}
	src, err := m.restore(ctx, t, p)
	if err != nil {
		return t, fromStore, err
	}
	if src == 0 {
		return t, fresh, m.checkNew(ctx, t)
	}
	if src == t.Epoch {
		// Continue in a new history rather than appending to the restored one.
		t, err = m.cp.AdvanceEpoch(ctx, t, m.cfg.NodeID)
	}
	return t, fromStore, err
}

// linkFiles keeps the tenant's uploaded files in the object store when the
// store is a directory on this machine: pb_data/storage becomes a link to
// tenants/{id}/files, so uploads are as durable as the replicas and survive
// a wiped cache. Other stores keep uploads in the local cache.
func (m *Manager) linkFiles(id string, p tenantPaths) error {
	ld, ok := m.objects.(storage.LocalDirStore)
	if !ok {
		return nil
	}
	prefix, err := storage.FilesPrefix(id)
	if err != nil {
		return err
	}
	target, err := ld.LocalDir(prefix)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return err
	}
	link := filepath.Join(p.pbData, core.LocalStorageDirName)
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.RemoveAll(link); err != nil {
		return err
	}
	if err := os.MkdirAll(p.pbData, 0o750); err != nil {
		return err
	}
	return os.Symlink(target, link)
}

// maxEpochScan bounds how many older epochs a restore looks through for
// the newest replica (an owner that never wrote leaves its epoch empty).
const maxEpochScan = 64

// restore fills p.pbData from the object store: from the newest epoch, at
// or below the tenant's current one, whose replica holds data. A tenant
// with a restore spec (a point-in-time restore, a fork) looks only at the
// epochs since the restore, and restores the spec's point when none of
// them has data yet. It returns the epoch it restored from (the current
// one for a fork, so that the tenant continues in a new epoch), or 0 when
// there was nothing to restore.
func (m *Manager) restore(ctx context.Context, t cluster.Tenant, p tenantPaths) (uint64, error) {
	if err := os.MkdirAll(p.pbData, 0o750); err != nil {
		return 0, err
	}
	lowest := uint64(1)
	if r := t.Restore; r != nil {
		lowest = max(r.Since, 1)
	}
	for epoch, n := t.Epoch, 0; epoch >= lowest && n < maxEpochScan; epoch, n = epoch-1, n+1 {
		found, err := m.restoreEpoch(ctx, t.ID, epoch, p, time.Time{})
		if err != nil {
			return 0, err
		}
		if found {
			return epoch, nil
		}
	}
	// No epoch since the restore has data yet: restore its archive or its
	// point in time.
	if r := t.Restore; r != nil && r.Archive != "" {
		if err := m.restoreArchive(ctx, t, r.Archive, p); err != nil {
			return 0, err
		}
		return t.Epoch, nil // continue in an epoch of its own
	}
	if r := t.Restore; r != nil {
		from := r.From
		if from == "" {
			from = t.ID
		}
		found, err := m.restoreEpoch(ctx, from, r.Epoch, p, r.At)
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s: the restore point (tenant %s, epoch %d, %s) is not in the object store",
				t.ID, from, r.Epoch, r.At.Format(time.RFC3339Nano))
		}
		// Every restore from the object store, this one too, has been
		// checked with PRAGMA integrity_check before it gets here.
		m.logger.Info("tenant restored to a point in time", "tenant", t.ID, "from", from, "epoch", r.Epoch, "at", r.At)
		if from != t.ID || r.Epoch >= t.Epoch {
			// Not this tenant's history: continue in an epoch of its own.
			return t.Epoch, nil
		}
		return r.Epoch, nil
	}
	return 0, nil
}

// restoreArchive fills p.pbData with the databases of the tenant archive
// at key, checked with PRAGMA integrity_check.
func (m *Manager) restoreArchive(ctx context.Context, t cluster.Tenant, key string, p tenantPaths) error {
	rc, err := m.objects.Open(ctx, key)
	if err != nil {
		return cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s: its archive %s could not be read: %v", t.ID, key, err)
	}
	_, err = storage.ReadArchive(rc, p.pbData, nil) // read as it downloads
	rc.Close()
	if err != nil {
		return cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s: archive %s: %v", t.ID, key, err)
	}
	for _, name := range replicatedDBs {
		path := filepath.Join(p.pbData, name)
		if !exists(path) {
			continue
		}
		if err := storage.CheckDatabase(ctx, path); err != nil {
			_ = os.RemoveAll(p.pbData)
			return cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s: archive %s: %v", t.ID, key, err)
		}
	}
	m.logger.Info("tenant restored from an archive", "tenant", t.ID, "archive", key)
	return nil
}

// restoreEpoch restores both databases of tenant id's epoch, at time at
// (zero: the latest), and reports whether the epoch had data. auxiliary.db
// is kept only if data.db is there too.
func (m *Manager) restoreEpoch(ctx context.Context, id string, epoch uint64, p tenantPaths, at time.Time) (bool, error) {
	aux := make(chan error, 1)
	go func() {
		_, err := m.restoreDB(ctx, id, epoch, "auxiliary.db", p, at)
		aux <- err
	}()
	found, err := m.restoreDB(ctx, id, epoch, "data.db", p, at)
	auxErr := <-aux
	if err != nil {
		return false, err
	}
	if !found {
		return false, removeDB(filepath.Join(p.pbData, "auxiliary.db"))
	}
	return true, auxErr
}

// removeDB removes a SQLite database and its WAL and shared-memory files.
func removeDB(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (m *Manager) restoreDB(ctx context.Context, id string, epoch uint64, name string, p tenantPaths, at time.Time) (bool, error) {
	client, err := m.replicaClient(id, epoch, name)
	if err != nil {
		return false, err
	}
	found, err := storage.RestoreAt(ctx, client, filepath.Join(p.pbData, name), at)
	if err != nil {
		m.logger.Error("restore failed", "tenant", id, "db", name, "epoch", epoch, "error", err)
		_ = os.Remove(filepath.Join(p.pbData, name))
		return false, cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s could not be restored from the object store; retry later", id)
	}
	if found {
		m.logger.Info("tenant database restored", "tenant", id, "db", name, "epoch", epoch)
	}
	return found, nil
}

// checkNew refuses to start a tenant empty when the object store says it
// has been written before: its replica is missing or unreachable.
func (m *Manager) checkNew(ctx context.Context, t cluster.Tenant) error {
	key, err := storage.MetadataKey(t.ID)
	if err != nil {
		return err
	}
	_, err = m.objects.Get(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return cluster.Errorf(cluster.ErrStorageUnavailable, "object store unreachable while opening tenant %s; retry later", t.ID)
	}
	m.logger.Error("tenant has metadata but no replica", "tenant", t.ID, "epoch", t.Epoch)
	return cluster.Errorf(cluster.ErrStorageUnavailable, "tenant %s has data in the object store but no replica was found; it will not be opened empty", t.ID)
}

func (m *Manager) writeMetadata(ctx context.Context, t cluster.Tenant) error {
	key, err := storage.MetadataKey(t.ID)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(tenantMetadata{ID: t.ID, CreatedAt: t.CreatedAt})
	if err := m.objects.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

func (m *Manager) replicaClient(id string, epoch uint64, name string) (litestream.ReplicaClient, error) {
	prefix, err := storage.ReplicaPrefix(id, epoch, name)
	if err != nil {
		return nil, err
	}
	return m.objects.ReplicaClient(prefix)
}

// attach starts replication of the tenant's databases at its epoch.
func (m *Manager) attach(inst *instance) error {
	id := inst.tenant.ID
	inst.fence = newFence(func() bool { return m.mayUpload(id) })
	for _, name := range replicatedDBs {
		client, err := m.replicaClient(id, inst.tenant.Epoch, name)
		if err != nil {
			return err
		}
		client = fencedClient{ReplicaClient: client, fence: inst.fence}
		db, err := m.repl.Attach(filepath.Join(inst.paths.pbData, name), filepath.Join(inst.paths.meta, name), client)
		if err != nil {
			return err
		}
		inst.dbs = append(inst.dbs, db)
	}
	return nil
}

// closeInstance shuts the app down first, then detaches replication (final
// sync): Litestream must not close its handle while the app's are open.
func (m *Manager) closeInstance(ctx context.Context, inst *instance) error {
	var errs []error
	if inst.quota != nil {
		// Before the app closes (the count is saved in auxiliary.db) and
		// before the final sync (which takes it to the object store). A
		// count that cannot be saved does not hold the stop up.
		if err := inst.quota.close(); err != nil {
			m.logger.Warn("request count not saved at stop", "tenant", inst.tenant.ID, "error", err)
		}
	}
	if inst.hooks != nil {
		inst.hooks.Close()
	}
	if err := closeApp(inst.app); err != nil {
		errs = append(errs, fmt.Errorf("close app: %w", err))
	}
	fenced := !m.mayUpload(inst.tenant.ID)
	for _, db := range inst.dbs {
		if fenced {
			db.ShutdownSyncTimeout = 0 // its uploads are refused: do not retry the final sync
		}
		// Litestream's Close makes the final sync only for a database it has
		// synced before; one closed within its first monitor tick would
		// otherwise leave its last writes unreplicated.
		if err := db.Sync(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", filepath.Base(db.Path()), err))
		}
		if err := m.repl.Detach(ctx, db.Path()); err != nil {
			errs = append(errs, err)
		}
	}
	if inst.fence != nil {
		if err := inst.fence.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && inst.handler != nil {
		// Final sync done: the next start may continue this replica history.
		st := localState{Epoch: inst.tenant.Epoch, Node: m.cfg.NodeID, Clean: true}
		if err := writeState(inst.paths.state, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) initSettings(app core.App, t cluster.Tenant) error {
	s := app.Settings()
	s.Meta.AppName = t.ID
	if t.Name != "" {
		s.Meta.AppName = t.Name
	}
	if m.cfg.PublicURL != "" {
		s.Meta.AppURL = strings.ReplaceAll(m.cfg.PublicURL, "{tenant}", t.ID)
	}
	if err := app.Save(s); err != nil {
		return fmt.Errorf("initial settings: %w", err)
	}
	return nil
}

func readState(path string) (localState, error) {
	var st localState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// writeState records the local copy's epoch and cleanliness, atomically.
func writeState(path string, st localState) error {
	b, _ := json.Marshal(st)
	return atomicfile.Write(path, b, 0o600)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
