package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/internal/atomicfile"
	"github.com/pbe/pbe/storage"
)

// fileRoute matches PocketBase's file download route.
var fileRoute = regexp.MustCompile(`^/api/files/([^/]+)/([^/]+)/([^/]+)$`)

// tenantFiles keeps a tenant's uploaded files durable in an object store
// that is not a local directory. A file a record gains is uploaded before
// the write is acknowledged; files a record loses are deleted; a file
// missing from the local cache (after a restore on another node) is
// fetched on its first download. Thumbnails are derived and stay local.
type tenantFiles struct {
	objects storage.ObjectStore
	prefix  string // tenants/{id}/files
	storage string // {pb_data}/storage
}

// bindFiles wires tenantFiles into the tenant's app. With a store that is a
// local directory, pb_data/storage is a link into it instead (linkFiles).
func (m *Manager) bindFiles(inst *instance) error {
	if _, local := m.objects.(storage.LocalDirStore); local {
		return nil
	}
	prefix, err := storage.FilesPrefix(inst.tenant.ID)
	if err != nil {
		return err
	}
	f := &tenantFiles{objects: m.objects, prefix: prefix, storage: filepath.Join(inst.paths.pbData, core.LocalStorageDirName)}
	app := inst.app
	app.OnRecordAfterCreateSuccess().BindFunc(func(e *core.RecordEvent) error {
		if err := f.sync(e.Context, e.Record, false); err != nil {
			return err
		}
		return e.Next()
	})
	app.OnRecordAfterUpdateSuccess().BindFunc(func(e *core.RecordEvent) error {
		if err := f.sync(e.Context, e.Record, true); err != nil {
			return err
		}
		return e.Next()
	})
	app.OnRecordAfterDeleteSuccess().BindFunc(func(e *core.RecordEvent) error {
		if hasFileFields(e.Record.Collection()) {
			f.logFailure(app, f.objects.DeletePrefix(e.Context, f.key(e.Record.Collection().Id, e.Record.Id, "")))
		}
		return e.Next()
	})
	app.OnCollectionAfterDeleteSuccess().BindFunc(func(e *core.CollectionEvent) error {
		f.logFailure(app, f.objects.DeletePrefix(e.Context, f.prefix+"/"+e.Collection.Id+"/"))
		return e.Next()
	})
	app.OnServe().BindFunc(func(e *core.ServeEvent) error {
		e.Router.BindFunc(f.fetchMissing)
		return e.Next()
	})
	return nil
}

func (f *tenantFiles) key(collection, record, name string) string {
	return f.prefix + "/" + collection + "/" + record + "/" + name
}

func (f *tenantFiles) logFailure(app core.App, err error) {
	if err != nil {
		app.Logger().Warn("removing uploaded files from the object store failed", "error", err.Error())
	}
}

func hasFileFields(c *core.Collection) bool {
	for _, fd := range c.Fields {
		if _, ok := fd.(*core.FileField); ok {
			return true
		}
	}
	return false
}

// fileNames lists the files a record references.
func fileNames(r *core.Record) []string {
	var names []string
	for _, fd := range r.Collection().Fields {
		if _, ok := fd.(*core.FileField); ok {
			names = append(names, r.GetStringSlice(fd.GetName())...)
		}
	}
	return names
}

// sync uploads the record's files the store lacks and, on update, deletes
// those the record no longer references.
func (f *tenantFiles) sync(ctx context.Context, r *core.Record, update bool) error {
	if !hasFileFields(r.Collection()) {
		return nil
	}
	dir := f.key(r.Collection().Id, r.Id, "")
	stored := map[string]bool{}
	if update {
		keys, err := f.objects.List(ctx, dir)
		if err != nil {
			return fmt.Errorf("list uploaded files: %w", err)
		}
		for _, k := range keys {
			stored[strings.TrimPrefix(k, dir)] = true
		}
	}
	for _, name := range fileNames(r) {
		if stored[name] {
			delete(stored, name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(f.storage, r.Collection().Id, r.Id, name))
		if err != nil {
			return fmt.Errorf("read uploaded file %s: %w", name, err)
		}
		if err := f.objects.Put(ctx, dir+name, data); err != nil {
			return fmt.Errorf("store uploaded file %s: %w", name, err)
		}
	}
	for name := range stored {
		if !strings.Contains(name, "/") { // thumbnails are never stored
			if err := f.objects.Delete(ctx, dir+name); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetchMissing brings a file that is not in the local cache back from the
// object store before PocketBase serves it.
func (f *tenantFiles) fetchMissing(e *core.RequestEvent) error {
	if e.Request.Method != http.MethodGet && e.Request.Method != http.MethodHead {
		return e.Next()
	}
	m := fileRoute.FindStringSubmatch(e.Request.URL.Path)
	if m == nil {
		return e.Next()
	}
	col, err := e.App.FindCachedCollectionByNameOrId(m[1])
	if err != nil || !plainName(m[2]) || !plainName(m[3]) {
		return e.Next()
	}
	local := filepath.Join(f.storage, col.Id, m[2], m[3])
	if _, err := os.Stat(local); err == nil {
		return e.Next()
	}
	data, err := f.objects.Get(e.Request.Context(), f.key(col.Id, m[2], m[3]))
	if errors.Is(err, storage.ErrNotFound) {
		return e.Next()
	}
	if err != nil {
		return e.Next() // PocketBase answers 404; the store is unreachable
	}
	if err := writeFileAtomic(local, data); err != nil {
		e.App.Logger().Warn("caching a fetched file failed", "error", err.Error())
	}
	return e.Next()
}

// plainName reports whether s can name one path element.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && path.Base(s) == s
}

// writeFileAtomic writes data to path through a temp file and a rename.
func writeFileAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	return atomicfile.Write(p, data, 0o640)
}
