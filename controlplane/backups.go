package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/superfly/ltx"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/storage"
)

// Point-in-time restore. Litestream keeps every tenant's history in the
// object store, one replica per ownership epoch; the restorable window is
// from the first snapshot of the oldest epoch to the newest write. A
// restore in place releases the tenant from its node (final sync), moves
// it to a new epoch whose first owner restores the chosen point instead of
// the latest state, and opens it again: the pre-restore state stays in
// the previous epoch, so the restore can itself be undone by restoring to
// the moment before it. A fork creates a new tenant from the point, with
// a copy of the uploaded files, and leaves the source alone.

// pitrActivateTimeout bounds opening a restored tenant.
const pitrActivateTimeout = 2 * time.Minute

// EpochWindow is the restorable span of one epoch's replica.
type EpochWindow struct {
	Epoch uint64    `json:"epoch"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}

// RestorePoints is a tenant's restorable window.
type RestorePoints struct {
	Tenant string        `json:"tenant"`
	From   *time.Time    `json:"from,omitempty"`
	To     *time.Time    `json:"to,omitempty"`
	Epochs []EpochWindow `json:"epochs"`
}

// restorePoints reads the replicas of t's epochs, newest first.
func (c *ControlPlane) restorePoints(ctx context.Context, t cluster.Tenant) (RestorePoints, error) {
	rp := RestorePoints{Tenant: t.ID, Epochs: []EpochWindow{}}
	if c.objects == nil {
		return rp, nil
	}
	for epoch, n := t.Epoch, 0; epoch > 0 && n < 64; epoch, n = epoch-1, n+1 {
		w, ok, err := c.epochWindow(ctx, t.ID, epoch)
		if err != nil {
			return rp, cluster.Errorf(cluster.ErrStorageUnavailable, "the object store could not be read: %v", err)
		}
		if !ok {
			continue
		}
		rp.Epochs = append(rp.Epochs, w)
		if rp.To == nil || w.To.After(*rp.To) {
			to := w.To
			rp.To = &to
		}
		if rp.From == nil || w.From.Before(*rp.From) {
			from := w.From
			rp.From = &from
		}
	}
	return rp, nil
}

// epochWindow is the span of epoch's data.db replica: from its oldest
// file a restore can start from (a snapshot, or the first transaction) to
// its newest file.
func (c *ControlPlane) epochWindow(ctx context.Context, id string, epoch uint64) (EpochWindow, bool, error) {
	prefix, err := storage.ReplicaPrefix(id, epoch, "data.db")
	if err != nil {
		return EpochWindow{}, false, err
	}
	client, err := c.objects.ReplicaClient(prefix)
	if err != nil {
		return EpochWindow{}, false, err
	}
	w := EpochWindow{Epoch: epoch}
	found := false
	for level := 0; level <= litestream.SnapshotLevel; level++ {
		files, err := litestream.FindLTXFiles(ctx, client, level, true, func(*ltx.FileInfo) (bool, error) { return true, nil })
		if err != nil && !errors.Is(err, litestream.ErrNoSnapshots) {
			return w, false, err
		}
		for _, f := range files {
			if (level == litestream.SnapshotLevel || f.MinTXID == 1) && (!found || f.CreatedAt.Before(w.From)) {
				w.From, found = f.CreatedAt, true
			}
			if f.CreatedAt.After(w.To) {
				w.To = f.CreatedAt
			}
		}
	}
	return w, found, nil
}

// epochAt returns the epoch whose replica holds the state at ts: the
// newest one whose first snapshot is not after ts.
func (rp RestorePoints) epochAt(ts time.Time) (uint64, bool) {
	for _, w := range rp.Epochs { // newest first
		if w.From.Before(ts) {
			return w.Epoch, true
		}
	}
	return 0, false
}

func (c *ControlPlane) handleRestorePoints(w http.ResponseWriter, r *http.Request) {
	t, err := c.pathOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	rp, err := c.restorePoints(r.Context(), t)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rp)
}

type pitrRequest struct {
	// Timestamp is the moment to restore (RFC 3339).
	Timestamp time.Time `json:"timestamp"`
	// Fork, when set, is the id of a new tenant made from that moment;
	// otherwise the tenant itself is restored in place.
	Fork string `json:"fork"`
}

// handlePITR restores a tenant to a moment, in place or into a fork.
func (c *ControlPlane) handlePITR(w http.ResponseWriter, r *http.Request) {
	// Another customer's tenant is "not found" whatever the body says.
	t, err := c.liveOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	id := t.ID
	var req pitrRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.Timestamp.IsZero() {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "timestamp" is required: the moment to restore, e.g. "2026-11-29T10:00:00Z"`))
		return
	}
	if req.Timestamp.After(time.Now()) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "timestamp" is in the future`))
		return
	}
	if req.Fork != "" {
		if err := cluster.ValidateTenantID(req.Fork); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	rp, err := c.restorePoints(r.Context(), t)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	epoch, ok := rp.epochAt(req.Timestamp)
	if !ok {
		msg := fmt.Sprintf("tenant %s has no restorable state at %s", id, req.Timestamp.UTC().Format(time.RFC3339))
		if rp.From != nil {
			msg += "; its window starts at " + rp.From.UTC().Format(time.RFC3339Nano)
		}
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "%s", msg))
		return
	}
	spec := cluster.RestoreSpec{Epoch: epoch, At: req.Timestamp.UTC()}
	if req.Fork != "" {
		c.fork(w, r, t, req.Fork, spec)
		return
	}
	c.restoreInPlace(w, r, t, spec)
}

// restoreInPlace restores t to spec in place.
func (c *ControlPlane) restoreInPlace(w http.ResponseWriter, r *http.Request, t cluster.Tenant, spec cluster.RestoreSpec) {
	if _, busy := c.moving.LoadOrStore(t.ID, struct{}{}); busy {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrTenantMoving, "tenant %s is moving or being restored; retry shortly", t.ID))
		return
	}
	defer c.moving.Delete(t.ID)
	ctx := r.Context()
	if err := c.release(ctx, t); err != nil {
		cluster.WriteError(w, asPlatformError(err))
		return
	}
	undo := time.Now().UTC()
	epoch, from := t.Epoch+1, t.Epoch
	spec.Since = epoch
	u := store.UpdateTenant{ID: t.ID, ExpectedVersion: t.Version, Epoch: &epoch, RestoreEpoch: &from, Restore: &spec}
	res, err := c.applyAudited(ctx, store.CmdUpdateTenant, "", u,
		auditEntry(r, "tenant_restore_point", t.Owner, t.ID, "to "+spec.At.Format(time.RFC3339Nano)))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	nt := res.(cluster.Tenant)
	c.logger.Info("tenant restored to a point in time", "tenant", t.ID, "at", spec.At, "from_epoch", spec.Epoch, "epoch", nt.Epoch)
	if err := c.activateNow(ctx, nt); err != nil {
		c.logger.Warn("open restored tenant", "tenant", t.ID, "error", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant": c.view(nt), "restored_to": spec.At,
		"undo": map[string]any{"timestamp": undo, "note": "restore to this timestamp to undo this restore"},
	})
}

// fork creates tenant forkID from spec of t.
func (c *ControlPlane) fork(w http.ResponseWriter, r *http.Request, t cluster.Tenant, forkID string, spec cluster.RestoreSpec) {
	ctx := r.Context()
	spec.From, spec.Since = t.ID, 1
	owner := t.Owner
	if p := principal(r); p.Kind == auth.KindCustomer {
		owner = p.ID
	}
	res, err := c.applyAudited(ctx, store.CmdCreateTenant, r.Header.Get(IdempotencyKeyHeader), store.CreateTenant{Tenant: cluster.Tenant{
		ID: forkID, Name: t.Name, Durability: t.Durability, Owner: owner, Restore: &spec,
	}}, auditEntry(r, auditTenantCreate, owner, forkID, "fork of "+t.ID+" at "+spec.At.Format(time.RFC3339Nano)))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	nt := res.(cluster.Tenant)
	if err := c.copyFiles(ctx, t.ID, forkID); err != nil {
		c.logger.Error("copy uploaded files to a fork", "tenant", t.ID, "fork", forkID, "error", err)
		c.undoCreate(nt)
		cluster.WriteError(w, cluster.Errorf(cluster.ErrStorageUnavailable, "the uploaded files of %s could not be copied; nothing was created", t.ID))
		return
	}
	if nt, err = c.Assign(ctx, forkID); err == nil {
		err = c.activateNow(ctx, nt)
	}
	if err != nil {
		c.logger.Warn("open fork", "tenant", forkID, "error", err)
	}
	w.Header().Set("Location", "/api/cp/tenants/"+forkID)
	writeJSON(w, http.StatusCreated, map[string]any{"tenant": c.view(nt), "restored_to": spec.At, "source": t.ID})
}

// copyFiles copies tenant from's uploaded files to tenant to, one at a
// time through a temporary file.
func (c *ControlPlane) copyFiles(ctx context.Context, from, to string) error {
	if c.objects == nil {
		return nil
	}
	src, err := storage.FilesPrefix(from)
	if err != nil {
		return err
	}
	dst, err := storage.FilesPrefix(to)
	if err != nil {
		return err
	}
	keys, err := c.objects.List(ctx, src)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := storage.CopyObject(ctx, c.objects, k, dst+strings.TrimPrefix(k, src), ""); err != nil {
			return err
		}
	}
	return nil
}

// activateNow has t's node open it, and waits.
func (c *ControlPlane) activateNow(ctx context.Context, t cluster.Tenant) error {
	if t.Node == "" {
		return nil
	}
	n, err := c.store.Node(t.Node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, pitrActivateTimeout)
	defer cancel()
	return c.orders.Activate(ctx, n, t.ID)
}

// asPlatformError keeps platform errors and reports others as a retryable
// unavailability.
func asPlatformError(err error) error {
	if _, ok := cluster.AsError(err); ok {
		return err
	}
	return cluster.Errorf(cluster.ErrUnavailable, "%v; retry shortly", err)
}
