package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"
	"github.com/superfly/ltx"
)

// replicated is a SQLite database replicated by a real Replicator to a
// directory replica.
type replicated struct {
	t      *testing.T
	sql    *sql.DB
	db     *litestream.DB
	client litestream.ReplicaClient
}

func newReplicated(t *testing.T) *replicated {
	t.Helper()
	dir := t.TempDir()
	repl, err := NewReplicator(ReplicationConfig{MonitorInterval: time.Hour, SyncInterval: time.Hour, ShutdownSyncTimeout: 10 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := repl.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = repl.Close(context.Background()) })
	path := filepath.Join(dir, "data.db")
	sdb, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	sdb.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = sdb.Close() })
	if _, err := sdb.Exec(`CREATE TABLE posts (id INTEGER PRIMARY KEY, body TEXT)`); err != nil {
		t.Fatal(err)
	}
	client := lsfile.NewReplicaClient(filepath.Join(dir, "replica"))
	db, err := repl.Attach(path, filepath.Join(dir, "meta"), client)
	if err != nil {
		t.Fatal(err)
	}
	return &replicated{t: t, sql: sdb, db: db, client: client}
}

// exec runs statements, then ships everything to the replica.
func (r *replicated) exec(stmts ...string) {
	r.t.Helper()
	for _, s := range stmts {
		if _, err := r.sql.Exec(s); err != nil {
			r.t.Fatalf("%s: %v", s, err)
		}
	}
	if err := r.db.SyncAndWait(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// rows is an INSERT of n posts whose body is expr of value (1 to n).
func rows(n int, expr string) string {
	return fmt.Sprintf(`WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < %d)
		INSERT INTO posts (body) SELECT %s FROM s`, n, expr)
}

// restoreBoth restores the replica with restoreDirect and with Litestream
// and returns both files' bytes.
func restoreBoth(t *testing.T, client litestream.ReplicaClient) (direct, viaLitestream []byte, plan int) {
	t.Helper()
	ctx := context.Background()
	infos, err := litestream.CalcRestorePlan(ctx, client, 0, time.Time{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "direct.db"), filepath.Join(dir, "litestream.db")
	if err := restoreDirect(ctx, client, a, time.Time{}); err != nil {
		t.Fatalf("direct restore: %v", err)
	}
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = b
	if err := litestream.NewReplicaWithClient(nil, client).Restore(ctx, opt); err != nil {
		t.Fatalf("Litestream restore: %v", err)
	}
	direct, _ = os.ReadFile(a)
	viaLitestream, _ = os.ReadFile(b)
	return direct, viaLitestream, len(infos)
}

func TestRestoreDirect_SameBytesAsLitestream(t *testing.T) {
	r := newReplicated(t)
	r.exec(rows(500, `replace(hex(zeroblob(1500)), '0', 'x') || value`))
	r.exec(`UPDATE posts SET body = 'short' WHERE id % 3 = 0`, `INSERT INTO posts (body) VALUES ('later')`)
	// Shrink the database: the last file's commit is below earlier ones.
	r.exec(`DELETE FROM posts WHERE id > 50`, `VACUUM`)
	r.exec(`INSERT INTO posts (body) VALUES ('after the shrink')`)

	direct, viaLitestream, plan := restoreBoth(t, r.client)
	if plan < 2 {
		t.Fatalf("restore plan has %d file(s); the test needs a snapshot and later files", plan)
	}
	if len(direct) == 0 || !bytes.Equal(direct, viaLitestream) {
		t.Fatalf("direct restore (%d bytes) differs from Litestream's (%d bytes)", len(direct), len(viaLitestream))
	}

	// And it is the database that was written.
	out := filepath.Join(t.TempDir(), "data.db")
	if found, err := Restore(context.Background(), r.client, out); err != nil || !found {
		t.Fatalf("Restore: %v, %v", found, err)
	}
	db, err := sql.Open("sqlite", out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	var last string
	if err := db.QueryRow(`SELECT count(*), max(body) FROM posts WHERE body IN ('short', 'after the shrink')`).Scan(&n, &last); err != nil {
		t.Fatal(err)
	}
	if n != 17 || last != "short" {
		t.Fatalf("restored rows: %d, %q", n, last)
	}
}

func TestRestore_EmptyReplicaRestoresNothing(t *testing.T) {
	client := lsfile.NewReplicaClient(t.TempDir())
	out := filepath.Join(t.TempDir(), "data.db")
	found, err := Restore(context.Background(), client, out)
	if err != nil || found {
		t.Fatalf("got %v, %v; want false, nil", found, err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an empty replica left a file: %v", err)
	}
}

// corrupting serves a replica whose last LTX file has one byte flipped.
type corrupting struct {
	litestream.ReplicaClient
	last ltx.TXID
}

func (c corrupting) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	rc, err := c.ReplicaClient.OpenLTXFile(ctx, level, minTXID, maxTXID, offset, size)
	if err != nil || maxTXID != c.last {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 0xFF
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestRestoreDirect_RefusesACorruptFile(t *testing.T) {
	r := newReplicated(t)
	r.exec(rows(200, `'row' || value`))
	r.exec(`INSERT INTO posts (body) VALUES ('last')`)
	infos, err := litestream.CalcRestorePlan(context.Background(), r.client, 0, time.Time{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "data.db")
	err = restoreDirect(context.Background(), corrupting{r.client, infos[len(infos)-1].MaxTXID}, out, time.Time{})
	if err == nil {
		t.Fatal("a corrupt LTX file was restored")
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("a failed restore left %s: %v", out, statErr)
	}
}

// TestRestore_RefusesAnIndexThatDisagreesWithItsTable: every restore runs
// PRAGMA integrity_check, which (unlike quick_check) compares each index
// with its table. The replica holds an index whose definition was changed
// under its entries: quick_check passes it, Restore must refuse it.
func TestRestore_RefusesAnIndexThatDisagreesWithItsTable(t *testing.T) {
	r := newReplicated(t)
	r.exec(`ALTER TABLE posts ADD COLUMN tag TEXT`, `CREATE INDEX posts_by ON posts(body)`,
		rows(50, `'row' || value`), `UPDATE posts SET tag = 'tag' || id`)
	r.exec(`PRAGMA writable_schema = ON`,
		`UPDATE sqlite_schema SET sql = 'CREATE INDEX posts_by ON posts(tag)' WHERE name = 'posts_by'`,
		`PRAGMA writable_schema = OFF`)

	// The replica's state as is, unchecked: quick_check finds nothing.
	ctx := context.Background()
	raw := filepath.Join(t.TempDir(), "raw.db")
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = raw
	if err := litestream.NewReplicaWithClient(nil, r.client).Restore(ctx, opt); err != nil {
		t.Fatal(err)
	}
	if err := pragmaCheck(ctx, raw, "quick_check"); err != nil {
		t.Fatalf("quick_check of the replica: %v; the test needs a fault only integrity_check finds", err)
	}

	out := filepath.Join(t.TempDir(), "data.db")
	found, err := Restore(ctx, r.client, out)
	if err == nil || !strings.Contains(err.Error(), "integrity check") {
		t.Fatalf("Restore: got %v, %v; want an integrity check failure", found, err)
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("a failed restore left %s: %v", out, statErr)
	}
}
