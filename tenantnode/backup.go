package tenantnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/archive"
	"github.com/pocketbase/pocketbase/tools/filesystem"
	"github.com/pocketbase/pocketbase/tools/security"
	"modernc.org/sqlite"
)

// createBackup replaces PocketBase's own backup creation. PocketBase runs
// wal_checkpoint(TRUNCATE) inside a write transaction and zips the live
// files; with Litestream holding its read lock that checkpoint waits out the
// busy timeout on each database (about 20 s with every write of the tenant
// stalled). Here each database is copied with VACUUM INTO, a consistent
// snapshot taken under a read transaction, and the copies are zipped.
// Uploaded files are not in the zip when they live in the object store.
func createBackup(e *core.BackupEvent) error {
	if e.Name == "" {
		e.Name = fmt.Sprintf("pb_backup_%s.zip", time.Now().UTC().Format("20060102150405"))
	}
	tmpRoot := filepath.Join(e.App.DataDir(), core.LocalTempDirName)
	staging := filepath.Join(tmpRoot, "backup_"+security.PseudorandomString(8))
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return fmt.Errorf("backup staging dir: %w", err)
	}
	defer os.RemoveAll(staging)

	if err := vacuumInto(e.App.NonconcurrentDB(), filepath.Join(staging, "data.db")); err != nil {
		return fmt.Errorf("backup data.db: %w", err)
	}
	if err := vacuumInto(e.App.AuxNonconcurrentDB(), filepath.Join(staging, "auxiliary.db")); err != nil {
		return fmt.Errorf("backup auxiliary.db: %w", err)
	}
	zipPath := staging + ".zip"
	if err := archive.Create(staging, zipPath); err != nil {
		return fmt.Errorf("backup archive: %w", err)
	}
	defer os.Remove(zipPath)

	fsys, err := e.App.NewBackupsFilesystem()
	if err != nil {
		return err
	}
	defer fsys.Close()
	fsys.SetContext(e.Context)
	file, err := filesystem.NewFileFromPath(zipPath)
	if err != nil {
		return err
	}
	file.OriginalName, file.Name = e.Name, e.Name
	return fsys.UploadFile(file, file.Name)
}

// vacuumInto writes a consistent copy of db to path. VACUUM INTO attaches
// its output, which tenant connections refuse (refuseAttach): it runs on a
// connection of its own with the limit raised for the statement.
func vacuumInto(b dbx.Builder, path string) error {
	db, ok := b.(*dbx.DB)
	if !ok {
		return fmt.Errorf("vacuum into: unexpected database builder %T", b)
	}
	ctx := context.Background()
	conn, err := db.DB().Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := sqlite.Limit(conn, sqliteLimitAttached, 1); err != nil {
		return err
	}
	defer func() { _, _ = sqlite.Limit(conn, sqliteLimitAttached, 0) }()
	_, err = conn.ExecContext(ctx, "VACUUM INTO ?", path)
	return err
}
