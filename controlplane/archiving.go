package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/storage"
)

// Archiving: a tenant idle for longer than ArchiveAfter (no node has it
// active, as the leader has seen from heartbeats since it took office) is
// archived. Its node releases it (final sync); its latest state is folded
// into one archive (tenants/{id}/backups/archived.tar.gz, written in
// ArchiveStorageClass where the store has storage classes); the registry
// moves it to a new epoch with no node whose first owner restores that
// archive; its node drops the local copy; and its replica history is
// deleted from the object store. The next request places it on a node,
// which opens it from the archive: the gateway holds the request meanwhile,
// as for any activation. Operators can archive and unarchive by hand.

// Defaults.
const (
	DefaultArchiveTick = time.Minute
	archivedName       = "archived"
	// DefaultArchiveStorageClass is S3's infrequent-access class: an
	// archive is written once and read once, when the tenant returns, and
	// it stays readable at once (no restore request, unlike the Glacier
	// classes). It is billed for at least 30 days and 128 KiB.
	DefaultArchiveStorageClass = "STANDARD_IA"
)

// validArchiveStorageClass refuses a class that is not an S3 class name,
// and the classes whose objects cannot be read without a restore request
// first: un-archiving reads the archive directly.
func validArchiveStorageClass(class string) error {
	for _, r := range class {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("control plane: ArchiveStorageClass %q is not an S3 storage class name (e.g. STANDARD_IA)", class)
		}
	}
	switch class {
	case "GLACIER", "DEEP_ARCHIVE":
		return fmt.Errorf("control plane: ArchiveStorageClass %s needs a restore request before an archive can be read; use STANDARD_IA, ONEZONE_IA or GLACIER_IR", class)
	}
	return nil
}

// archiver archives idle tenants, on the leader.
func (c *ControlPlane) archiver(ctx context.Context) {
	if c.cfg.ArchiveAfter <= 0 {
		return
	}
	c.eachActiveTenant(ctx, c.cfg.ArchiveTick, DefaultArchiveTick, func(t cluster.Tenant) {
		if t.ArchivedAt != nil || !c.fleet.idle(t.ID, c.cfg.ArchiveAfter) {
			return
		}
		if _, err := c.ArchiveTenant(ctx, t.ID); err != nil {
			c.logger.Warn("archive idle tenant", "tenant", t.ID, "error", err)
		}
	})
}

// ArchiveTenant archives tenant id now.
func (c *ControlPlane) ArchiveTenant(ctx context.Context, id string) (cluster.Tenant, error) {
	if c.objects == nil {
		return cluster.Tenant{}, cluster.Errorf(cluster.ErrUnavailable, "this node has no object store")
	}
	if _, busy := c.moving.LoadOrStore(id, struct{}{}); busy {
		return cluster.Tenant{}, cluster.Errorf(cluster.ErrTenantMoving, "tenant %s is moving or being restored; retry shortly", id)
	}
	defer c.moving.Delete(id)
	t, err := c.store.Tenant(id)
	if err != nil {
		return t, err
	}
	if t.State != cluster.TenantActive {
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s is deleted", id)
	}
	if t.ArchivedAt != nil {
		return t, nil
	}
	if err := c.release(ctx, t); err != nil {
		return t, asPlatformError(err)
	}
	prefix, err := backupsPrefix(id)
	if err != nil {
		return t, err
	}
	key := prefix + archivedName + ".tar.gz"
	size, err := c.storeArchive(ctx, t, key, c.cfg.ArchiveStorageClass)
	if err != nil {
		if e, ok := cluster.AsError(err); ok && e.Code == cluster.ErrInvalidInput.Code {
			// Never written: nothing to fold; it is archived as it is.
			size = 0
		} else {
			c.warm(ctx, t)
			return t, asPlatformError(err)
		}
	}
	epoch, from, none := t.Epoch+1, t.Epoch, ""
	u := store.UpdateTenant{ID: id, ExpectedVersion: t.Version, Epoch: &epoch, RestoreEpoch: &from, Node: &none, Archive: true,
		Restore: &cluster.RestoreSpec{Archive: key, Since: epoch}}
	if size == 0 {
		// An empty tenant: nothing to restore later.
		u.Archive, u.Restore = false, nil
	}
	res, err := c.apply(ctx, store.CmdUpdateTenant, "", u)
	if err != nil {
		c.warm(ctx, t)
		return t, err
	}
	nt := res.(cluster.Tenant)
	c.removeFromNode(ctx, t)
	if size > 0 {
		lp, err := storage.TenantPrefix(id)
		if err == nil {
			err = c.objects.DeletePrefix(ctx, lp+"litestream/")
		}
		if err != nil {
			c.logger.Warn("trim archived tenant's replica history", "tenant", id, "error", err)
		}
	}
	c.logger.Info("tenant archived", "tenant", id, "archive_bytes", size)
	return nt, nil
}

func (c *ControlPlane) handleArchive(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t, err := c.ArchiveTenant(r.Context(), id)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, "tenant_archive", t.Owner, id, "")
	writeJSON(w, http.StatusOK, c.view(t))
}

// handleUnarchive places an archived tenant on a node and opens it.
func (c *ControlPlane) handleUnarchive(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t, err := c.Assign(r.Context(), id)
	if err == nil {
		err = c.activateNow(r.Context(), t)
	}
	if err != nil {
		cluster.WriteError(w, asPlatformError(fmt.Errorf("unarchive %s: %w", id, err)))
		return
	}
	if t, err = c.store.Tenant(id); err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c.view(t))
}
