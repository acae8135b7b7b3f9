package tenantnode

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/cluster"
)

// What a tenant has used is kept in two small tables of its auxiliary.db,
// the database PocketBase keeps its logs in:
//
//   - _pbe_usage: the request window (start, count);
//   - _pbe_files: the size of every uploaded file the tenant's records
//     reference.
//
// auxiliary.db rather than data.db: it is replicated like data.db (so the
// usage moves with the tenant and survives a wiped node), but it is out of
// the tenant's reach (view collections and JS hooks query data.db), its
// writes never wait for a tenant's own write lock, and a tenant in sync
// durability does not pay an object-store round trip for them (only
// data.db's writes wait for the replica).
//
// The request count is written back at most every usageFlushInterval when
// it changed, and always when the tenant is stopped (eviction, release for
// a move, node shutdown) before the final sync. A node that dies loses the
// counts of its last usageFlushInterval plus the replication lag: those
// requests are not counted again.
const (
	usageFlushInterval = 2 * time.Second
	// storageRefreshInterval is how often the databases' used size is
	// measured again while the tenant has a storage quota and serves
	// requests: a tenant can write past its quota for about this long.
	storageRefreshInterval = time.Second
)

const (
	usageSchema = `CREATE TABLE IF NOT EXISTS _pbe_usage (
	name         TEXT PRIMARY KEY NOT NULL,
	window_start INTEGER NOT NULL,
	count        INTEGER NOT NULL
)`
	filesSchema = `CREATE TABLE IF NOT EXISTS _pbe_files (
	path  TEXT PRIMARY KEY NOT NULL,
	bytes INTEGER NOT NULL
) WITHOUT ROWID`
	// usedBytesQuery is a database's size without its free pages. PocketBase
	// leaves auto_vacuum off, so a database file never shrinks when rows are
	// deleted; its pages go to the freelist and are reused. Counting used
	// pages makes deleting data bring a tenant back under its quota. The
	// WAL is not counted on its own: a read sees its committed pages in
	// page_count already, and its file size follows Litestream's
	// checkpoints, not the tenant's data.
	usedBytesQuery = `SELECT ((SELECT page_count FROM pragma_page_count()) -
	(SELECT freelist_count FROM pragma_freelist_count())) * (SELECT page_size FROM pragma_page_size())`
)

// usage is the part of quotaState that measures and persists.
type usage struct {
	app     *core.BaseApp
	storage string // {pb_data}/storage: uploaded files
	logger  *slog.Logger

	flushMu sync.Mutex
	flushed savedWindow // what _pbe_usage holds

	growth growthRing // storage samples for the growth rate, growth.go

	stop, done chan struct{} // the usage loop; nil until started
}

type savedWindow struct {
	Start int64 `db:"window_start"`
	Count int64 `db:"count"`
}

// openQuota loads what tenant t has used from its databases and applies
// t's suspension and quotas. The app is open; nothing is served yet.
func openQuota(app *core.BaseApp, pbData string, t cluster.Tenant, logger *slog.Logger) (*quotaState, error) {
	q := &quotaState{usage: usage{
		app:     app,
		storage: filepath.Join(pbData, core.LocalStorageDirName),
		logger:  logger.With("tenant", t.ID),
	}}
	if err := q.loadWindow(); err != nil {
		return nil, fmt.Errorf("request count: %w", err)
	}
	if err := q.loadFiles(); err != nil {
		return nil, fmt.Errorf("uploaded files size: %w", err)
	}
	if err := q.measureDBs(); err != nil {
		return nil, fmt.Errorf("database size: %w", err)
	}
	q.growth.add(time.Now(), q.storageBytes())
	q.bindFileHooks()
	q.apply(t)
	return q, nil
}

func (q *quotaState) loadWindow() error {
	aux := q.app.AuxNonconcurrentDB()
	if _, err := aux.NewQuery(usageSchema).Execute(); err != nil {
		return err
	}
	var w savedWindow
	err := aux.NewQuery(`SELECT window_start, count FROM _pbe_usage WHERE name = 'requests'`).One(&w)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	q.flushed = w
	rw := &requestWindow{start: w.Start}
	rw.count.Store(w.Count)
	q.window.Store(rw)
	return nil
}

// flush writes the request window back if it changed since the last flush.
func (q *quotaState) flush() error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	w := q.window.Load()
	if w == nil {
		return nil
	}
	cur := savedWindow{Start: w.start, Count: w.count.Load()}
	if cur == q.flushed {
		return nil
	}
	_, err := q.app.AuxNonconcurrentDB().NewQuery(`INSERT INTO _pbe_usage (name, window_start, count)
		VALUES ('requests', {:start}, {:count})
		ON CONFLICT (name) DO UPDATE SET window_start = excluded.window_start, count = excluded.count`).
		Bind(dbx.Params{"start": cur.Start, "count": cur.Count}).Execute()
	if err != nil {
		return fmt.Errorf("save request count: %w", err)
	}
	q.flushed = cur
	return nil
}

// measureDBs measures the used size of data.db and auxiliary.db through
// the read pools.
func (q *quotaState) measureDBs() error {
	var total int64
	for _, db := range []dbx.Builder{q.app.ConcurrentDB(), q.app.AuxConcurrentDB()} {
		var n int64
		if err := db.NewQuery(usedBytesQuery).Row(&n); err != nil {
			return err
		}
		total += n
	}
	q.dbBytes.Store(total)
	return nil
}

// storageBytes is the tenant's database and file bytes as last measured.
func (q *quotaState) storageBytes() int64 { return q.dbBytes.Load() + q.fileBytes.Load() }

// growthRate is the tenant's storage growth in bytes per hour over the
// last growthWindow (or since activation), up to growthMeasureInterval
// stale. No I/O.
func (q *quotaState) growthRate(now time.Time) float64 {
	return q.growth.rate(now, q.storageBytes())
}

// start runs the usage loop until close.
func (q *quotaState) start() {
	q.stop, q.done = make(chan struct{}), make(chan struct{})
	go q.loop()
}

// loop measures the databases again (every growthMeasureInterval, and
// every tick while a storage quota applies and requests arrive), samples
// the storage for the growth rate, and saves the request count when it
// changed.
func (q *quotaState) loop() {
	defer close(q.done)
	tick := time.NewTicker(storageRefreshInterval)
	defer tick.Stop()
	lastFlush, lastMeasure := time.Now(), time.Now()
	for {
		select {
		case <-q.stop:
			return
		case now := <-tick.C:
			quota := q.storageLimit.Load() > 0 && q.served.Swap(false)
			if quota || now.Sub(lastMeasure) >= growthMeasureInterval {
				lastMeasure = now
				if err := q.measureDBs(); err != nil {
					q.logger.Warn("measuring the tenant's database size failed", "error", err)
				} else {
					q.growth.add(now, q.storageBytes())
				}
			}
			if now.Sub(lastFlush) >= usageFlushInterval {
				lastFlush = now
				if err := q.flush(); err != nil {
					q.logger.Warn("saving the tenant's request count failed", "error", err)
				}
			}
		}
	}
}

// close stops the usage loop and saves the request count; the app must
// still be open, and the final sync must follow.
func (q *quotaState) close() error {
	if q.stop != nil {
		close(q.stop)
		<-q.done
		q.stop = nil
	}
	return q.flush()
}

// loadFiles sums the sizes in _pbe_files. A tenant that has none yet (new,
// or older than this table) gets it filled from the local copy of its
// files: complete when the object store is a local directory (pb_data/
// storage is then a link into it), otherwise what this node has cached.
func (q *quotaState) loadFiles() error {
	aux := q.app.AuxNonconcurrentDB()
	var tables int
	if err := aux.NewQuery(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_pbe_files'`).Row(&tables); err != nil {
		return err
	}
	if tables == 0 {
		if err := q.indexLocalFiles(); err != nil {
			return err
		}
	}
	var total int64
	if err := aux.NewQuery(`SELECT COALESCE(SUM(bytes), 0) FROM _pbe_files`).Row(&total); err != nil {
		return err
	}
	q.fileBytes.Store(total)
	return nil
}

// indexLocalFiles creates _pbe_files from one walk of the local storage
// directory: {collection}/{record}/{file}. Thumbnails ({record}/thumbs_*)
// are derived from the files and not counted.
func (q *quotaState) indexLocalFiles() error {
	sizes := map[string]int64{}
	root, err := filepath.EvalSymlinks(q.storage)
	if err == nil {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			depth := len(strings.Split(filepath.ToSlash(rel), "/"))
			switch {
			case d.IsDir() && depth >= 3 && rel != ".":
				return filepath.SkipDir
			case d.Type().IsRegular() && depth == 3:
				info, err := d.Info()
				if err != nil {
					return err
				}
				sizes[filepath.ToSlash(rel)] = info.Size()
			}
			return nil
		})
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return q.auxTx(func(tx *dbx.Tx) error {
		if _, err := tx.NewQuery(filesSchema).Execute(); err != nil {
			return err
		}
		for p, n := range sizes {
			if err := putFile(tx, p, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// bindFileHooks keeps _pbe_files and fileBytes current as records gain and
// lose files. The hooks run after the commit; a failure is logged and the
// count is off until the file is deleted.
func (q *quotaState) bindFileHooks() {
	changed := func(e *core.RecordEvent) error {
		if hasFileFields(e.Record.Collection()) {
			q.recordFiles(e.Record)
		}
		return e.Next()
	}
	q.app.OnRecordAfterCreateSuccess().BindFunc(changed)
	q.app.OnRecordAfterUpdateSuccess().BindFunc(changed)
	q.app.OnRecordAfterDeleteSuccess().BindFunc(func(e *core.RecordEvent) error {
		if hasFileFields(e.Record.Collection()) {
			q.forgetFiles(e.Record.Collection().Id + "/" + e.Record.Id)
		}
		return e.Next()
	})
	q.app.OnCollectionAfterDeleteSuccess().BindFunc(func(e *core.CollectionEvent) error {
		q.forgetFiles(e.Collection.Id)
		return e.Next()
	})
}

// recordFiles makes _pbe_files hold exactly the files rec references: the
// sizes of new ones (just uploaded, so in the local storage directory) are
// added, those rec no longer references are dropped.
func (q *quotaState) recordFiles(rec *core.Record) {
	col, id := rec.Collection().Id, rec.Id
	want := map[string]bool{}
	for _, name := range fileNames(rec) {
		if plainName(name) {
			want[name] = true
		}
	}
	var delta int64
	err := q.auxTx(func(tx *dbx.Tx) error {
		delta = 0
		var have []struct {
			Path  string `db:"path"`
			Bytes int64  `db:"bytes"`
		}
		lo, hi := pathRange(col + "/" + id)
		err := tx.NewQuery(`SELECT path, bytes FROM _pbe_files WHERE path >= {:lo} AND path < {:hi}`).
			Bind(dbx.Params{"lo": lo, "hi": hi}).All(&have)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, f := range have {
			name := strings.TrimPrefix(f.Path, lo)
			if want[name] {
				known[name] = true
				continue
			}
			if _, err := tx.NewQuery(`DELETE FROM _pbe_files WHERE path = {:p}`).Bind(dbx.Params{"p": f.Path}).Execute(); err != nil {
				return err
			}
			delta -= f.Bytes
		}
		for name := range want {
			if known[name] {
				continue
			}
			info, err := os.Stat(filepath.Join(q.storage, col, id, name))
			if err != nil {
				continue // not in this node's cache (an older file): not counted
			}
			if err := putFile(tx, lo+name, info.Size()); err != nil {
				return err
			}
			delta += info.Size()
		}
		return nil
	})
	if err != nil {
		q.logger.Warn("recording the size of uploaded files failed", "record", id, "error", err)
		return
	}
	q.fileBytes.Add(delta)
}

// forgetFiles drops the files under prefix (a record's or a collection's).
func (q *quotaState) forgetFiles(prefix string) {
	var gone int64
	lo, hi := pathRange(prefix)
	err := q.auxTx(func(tx *dbx.Tx) error {
		params := dbx.Params{"lo": lo, "hi": hi}
		if err := tx.NewQuery(`SELECT COALESCE(SUM(bytes), 0) FROM _pbe_files WHERE path >= {:lo} AND path < {:hi}`).
			Bind(params).Row(&gone); err != nil {
			return err
		}
		_, err := tx.NewQuery(`DELETE FROM _pbe_files WHERE path >= {:lo} AND path < {:hi}`).Bind(params).Execute()
		return err
	})
	if err != nil {
		q.logger.Warn("forgetting the size of deleted files failed", "prefix", prefix, "error", err)
		return
	}
	q.fileBytes.Add(-gone)
}

// pathRange is the key range of _pbe_files under prefix: [prefix/, prefix0)
// ('0' follows '/').
func pathRange(prefix string) (lo, hi string) {
	return prefix + "/", prefix + "0"
}

func putFile(tx *dbx.Tx, path string, n int64) error {
	_, err := tx.NewQuery(`INSERT OR REPLACE INTO _pbe_files (path, bytes) VALUES ({:p}, {:n})`).
		Bind(dbx.Params{"p": path, "n": n}).Execute()
	return err
}

// auxTx runs fn in a transaction of auxiliary.db's writer connection.
func (q *quotaState) auxTx(fn func(*dbx.Tx) error) error {
	db, ok := q.app.AuxNonconcurrentDB().(*dbx.DB)
	if !ok {
		return errors.New("auxiliary.db writer is not a *dbx.DB")
	}
	return db.Transactional(fn)
}
