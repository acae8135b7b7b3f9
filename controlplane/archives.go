package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/storage"
)

// Tenant archives (storage/archive.go: a PocketBase data directory as a
// gzipped tar): exports, named backups and imports. An archive is built
// from the object store — the tenant's latest replicated state (at most
// the replication lag behind) and its uploaded files — so it works
// whether or not the tenant is active, and any control-plane node can
// build one.

// MaxImportBytes bounds an imported archive (received into a temporary
// file, uploaded in parts).
const MaxImportBytes = 8 << 30

var backupName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// backupsPrefix is where tenant id's named backups live.
func backupsPrefix(id string) (string, error) {
	p, err := storage.TenantPrefix(id)
	if err != nil {
		return "", err
	}
	return p + "backups/", nil
}

// latestState restores t's latest replicated databases into dir, as its
// next owner would.
func (c *ControlPlane) latestState(ctx context.Context, t cluster.Tenant, dir string) error {
	lowest := uint64(1)
	if r := t.Restore; r != nil {
		lowest = max(r.Since, 1)
	}
	restore := func(id string, epoch uint64, at time.Time) (bool, error) {
		var found bool
		for _, db := range []string{"data.db", "auxiliary.db"} {
			prefix, err := storage.ReplicaPrefix(id, epoch, db)
			if err != nil {
				return false, err
			}
			client, err := c.objects.ReplicaClient(prefix)
			if err != nil {
				return false, err
			}
			ok, err := storage.RestoreAt(ctx, client, filepath.Join(dir, db), at)
			if err != nil {
				return false, err
			}
			if db == "data.db" && !ok {
				return false, nil
			}
			found = found || ok
		}
		return found, nil
	}
	for epoch, n := t.Epoch, 0; epoch >= lowest && epoch > 0 && n < 64; epoch, n = epoch-1, n+1 {
		if ok, err := restore(t.ID, epoch, time.Time{}); err != nil || ok {
			return err
		}
	}
	if r := t.Restore; r != nil {
		if r.Archive != "" {
			return c.readStoredArchive(ctx, r.Archive, dir, nil)
		}
		from := r.From
		if from == "" {
			from = t.ID
		}
		if ok, err := restore(from, r.Epoch, r.At); err != nil || ok {
			return err
		}
	}
	return cluster.Errorf(cluster.ErrInvalidInput, "tenant %s has no data in the object store yet", t.ID)
}

// storeArchive writes t's archive to key in storage class class ("" the
// store's default) through a temporary file, so that a large tenant is
// never held in memory, and returns its size.
func (c *ControlPlane) storeArchive(ctx context.Context, t cluster.Tenant, key, class string) (int64, error) {
	f, err := os.CreateTemp("", "pbe-archive-*.tar.gz")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := c.writeArchive(ctx, t, f); err != nil {
		return 0, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := storage.PutFileClass(ctx, c.objects, key, f.Name(), class); err != nil {
		return 0, cluster.Errorf(cluster.ErrStorageUnavailable, "the archive could not be stored: %v", err)
	}
	return size, nil
}

// readStoredArchive unpacks the archive at key into dir ("" for none),
// passing each uploaded file to fn, as storage.ReadArchive does, reading
// it from the store as it goes.
func (c *ControlPlane) readStoredArchive(ctx context.Context, key, dir string, fn func(storage.ArchiveEntry) error) error {
	rc, err := c.objects.Open(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = storage.ReadArchive(rc, dir, fn)
	return err
}

// writeArchive writes t's archive to w.
func (c *ControlPlane) writeArchive(ctx context.Context, t cluster.Tenant, w io.Writer) error {
	if c.objects == nil {
		return cluster.Errorf(cluster.ErrUnavailable, "this node has no object store")
	}
	dir, err := os.MkdirTemp("", "pbe-archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := c.latestState(ctx, t, dir); err != nil {
		return err
	}
	files, err := storage.FilesPrefix(t.ID)
	if err != nil {
		return err
	}
	m := storage.ArchiveManifest{Tenant: t.ID, CreatedAt: time.Now().UTC(), Epoch: t.Epoch}
	return storage.WriteArchive(ctx, w, m, dir, c.objects, files)
}

// handleExport streams the tenant as one archive.
func (c *ControlPlane) handleExport(w http.ResponseWriter, r *http.Request) {
	t, err := c.liveOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	// Build it first: an error must be a JSON answer, not a cut stream.
	f, err := os.CreateTemp("", "pbe-export-*.tar.gz")
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := c.writeArchive(r.Context(), t, f); err != nil {
		cluster.WriteError(w, asPlatformError(err))
		return
	}
	fi, err := f.Stat()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cluster.WriteError(w, err)
		return
	}
	name := fmt.Sprintf("%s-%s.tar.gz", t.ID, time.Now().UTC().Format("20060102T150405Z"))
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.Copy(w, f)
}

// liveOwnedTenant is pathOwnedTenant for a tenant that must not be
// deleted.
func (c *ControlPlane) liveOwnedTenant(r *http.Request) (cluster.Tenant, error) {
	t, err := c.pathOwnedTenant(r)
	if err == nil && t.State != cluster.TenantActive {
		err = cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s is deleted; restore it first", t.ID)
	}
	return t, err
}

// BackupInfo is a named backup.
type BackupInfo struct {
	Name string `json:"name"`
	Size int    `json:"size,omitempty"`
}

type backupRequest struct {
	Name string `json:"name"`
}

// handleCreateBackup stores a named backup under tenants/{id}/backups/.
func (c *ControlPlane) handleCreateBackup(w http.ResponseWriter, r *http.Request) {
	t, err := c.liveOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req backupRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	if req.Name == "" {
		req.Name = time.Now().UTC().Format("20060102T150405Z")
	}
	if !backupName.MatchString(req.Name) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "name" must be 1 to 64 letters, digits, ".", "_" or "-"`))
		return
	}
	prefix, err := backupsPrefix(t.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	key := prefix + req.Name + ".tar.gz"
	if exists, err := storage.Exists(r.Context(), c.objects, key); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrStorageUnavailable, "the object store could not be read: %v", err))
		return
	} else if exists {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrTenantExists, "tenant %s already has a backup named %s", t.ID, req.Name))
		return
	}
	size, err := c.storeArchive(r.Context(), t, key, "")
	if err != nil {
		cluster.WriteError(w, asPlatformError(err))
		return
	}
	c.audit(r, "backup_create", t.Owner, t.ID, req.Name)
	writeJSON(w, http.StatusCreated, BackupInfo{Name: req.Name, Size: int(size)})
}

func (c *ControlPlane) handleListBackups(w http.ResponseWriter, r *http.Request) {
	t, err := c.liveOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	prefix, err := backupsPrefix(t.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	keys, err := c.objects.List(r.Context(), prefix)
	if err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrStorageUnavailable, "the object store could not be read: %v", err))
		return
	}
	items := []BackupInfo{}
	for _, k := range keys {
		if name, ok := strings.CutSuffix(strings.TrimPrefix(k, prefix), ".tar.gz"); ok && name != importName {
			items = append(items, BackupInfo{Name: name})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": len(items)})
}

// backupKey is the object key of the named backup of the request.
func (c *ControlPlane) backupKey(r *http.Request, t cluster.Tenant) (string, error) {
	name := r.PathValue("name")
	if !backupName.MatchString(name) {
		return "", cluster.Errorf(cluster.ErrNotFound, "no backup %q", clipPath(name))
	}
	prefix, err := backupsPrefix(t.ID)
	if err != nil {
		return "", err
	}
	key := prefix + name + ".tar.gz"
	exists, err := storage.Exists(r.Context(), c.objects, key)
	if err != nil {
		return "", cluster.Errorf(cluster.ErrStorageUnavailable, "the object store could not be read: %v", err)
	}
	if !exists {
		return "", cluster.Errorf(cluster.ErrNotFound, "tenant %s has no backup %s", t.ID, name)
	}
	return key, nil
}

func (c *ControlPlane) handleDeleteBackup(w http.ResponseWriter, r *http.Request) {
	t, err := c.liveOwnedTenant(r)
	if err == nil {
		var key string
		if key, err = c.backupKey(r, t); err == nil {
			err = c.objects.Delete(r.Context(), key)
		}
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, "backup_delete", t.Owner, t.ID, r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

// handleRestoreBackup restores a named backup in place: databases and the
// uploaded files it holds (files uploaded since stay).
func (c *ControlPlane) handleRestoreBackup(w http.ResponseWriter, r *http.Request) {
	t, err := c.liveOwnedTenant(r)
	var key string
	if err == nil {
		key, err = c.backupKey(r, t)
	}
	if err == nil {
		err = c.putArchiveFiles(r.Context(), key, t.ID)
	}
	if err != nil {
		cluster.WriteError(w, asPlatformError(err))
		return
	}
	c.restoreInPlace(w, r, t, cluster.RestoreSpec{Archive: key})
}

// putArchiveFiles writes the uploaded files of the archive at key into
// tenant id's files.
func (c *ControlPlane) putArchiveFiles(ctx context.Context, key, id string) error {
	files, err := storage.FilesPrefix(id)
	if err != nil {
		return err
	}
	return c.readStoredArchive(ctx, key, "", func(e storage.ArchiveEntry) error {
		return c.objects.Put(ctx, files+"/"+e.Path, e.Data)
	})
}

// receiveFile writes what r yields to a new file at path.
func receiveFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readArchiveFile unpacks the archive file at path into dir.
func readArchiveFile(path, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = storage.ReadArchive(f, dir, nil)
	return err
}

// importName is the backup name an imported archive is kept under.
const importName = "import"

// handleImport creates a tenant (?id=) from an archive in the body.
func (c *ControlPlane) handleImport(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if err := cluster.ValidateTenantID(id); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "query parameter \"id\": %v", err))
		return
	}
	if c.objects == nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "this node has no object store"))
		return
	}
	req := createTenantRequest{ID: id, Name: r.URL.Query().Get("name")}
	if err := validateName(req.Name); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := c.checkCreator(r, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if _, err := c.store.Tenant(id); err == nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrTenantExists, "tenant %q already exists", id))
		return
	}
	// Kept in a temporary file, and checked whole before anything is
	// stored.
	dir, err := os.MkdirTemp("", "pbe-import-")
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "archive.tar.gz")
	if err := receiveFile(archive, http.MaxBytesReader(w, r.Body, MaxImportBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			cluster.WriteError(w, &cluster.Error{Code: "body_too_large", Message: fmt.Sprintf("the archive is larger than the limit of %d bytes", int64(MaxImportBytes))})
			return
		}
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "the archive could not be read: %v", err))
		return
	}
	if err := readArchiveFile(archive, filepath.Join(dir, "pb_data")); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "not a tenant archive: %v", err))
		return
	}
	if err := storage.CheckDatabase(r.Context(), filepath.Join(dir, "pb_data", "data.db")); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "the archive's data.db is not a sound SQLite database: %v", err))
		return
	}
	prefix, err := backupsPrefix(id)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	key := path.Join(prefix, importName+".tar.gz")
	ctx := r.Context()
	if err := c.objects.PutFile(ctx, key, archive); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrStorageUnavailable, "the archive could not be stored: %v", err))
		return
	}
	if err := c.putArchiveFiles(ctx, key, id); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrStorageUnavailable, "the archive's files could not be stored: %v", err))
		return
	}
	owner := req.Owner
	if p := principal(r); p.Kind == auth.KindCustomer {
		owner = p.ID
	}
	res, err := c.applyAudited(ctx, store.CmdCreateTenant, r.Header.Get(IdempotencyKeyHeader), store.CreateTenant{Tenant: cluster.Tenant{
		ID: id, Name: req.Name, Owner: owner, Restore: &cluster.RestoreSpec{Archive: key, Since: 1},
	}}, auditEntry(r, auditTenantCreate, owner, id, "imported"))
	if err != nil {
		if tp, perr := storage.TenantPrefix(id); perr == nil && !errors.Is(err, cluster.ErrTenantExists) {
			_ = c.objects.DeletePrefix(context.WithoutCancel(ctx), tp)
		}
		cluster.WriteError(w, err)
		return
	}
	nt := res.(cluster.Tenant)
	if nt, err = c.Assign(ctx, id); err == nil {
		err = c.activateNow(ctx, nt)
	}
	if err != nil {
		c.logger.Warn("open imported tenant", "tenant", id, "error", err)
	}
	w.Header().Set("Location", "/api/cp/tenants/"+id)
	writeJSON(w, http.StatusCreated, c.view(nt))
}
