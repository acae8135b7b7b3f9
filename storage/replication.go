package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/superfly/ltx"
)

// ReplicationConfig tunes embedded Litestream.
type ReplicationConfig struct {
	// MonitorInterval is how often each database's WAL is checked for new
	// commits. Together with SyncInterval it bounds the replication lag.
	MonitorInterval time.Duration
	// SyncInterval is how often new changes are uploaded to the store.
	SyncInterval time.Duration
	// ShutdownSyncTimeout bounds the final upload when a database detaches.
	ShutdownSyncTimeout time.Duration
}

// DefaultReplicationConfig gives a replication lag of about a second at a
// small idle cost per database (PITFALLS.md: 1 s intervals cost ~6% of a
// core for 400 databases; 100 ms intervals ~34%).
func DefaultReplicationConfig() ReplicationConfig {
	return ReplicationConfig{
		MonitorInterval:     time.Second,
		SyncInterval:        time.Second,
		ShutdownSyncTimeout: 30 * time.Second,
	}
}

// Validate names the first field that is out of range.
func (c ReplicationConfig) Validate() error {
	switch {
	case c.MonitorInterval <= 0:
		return errors.New("replication: MonitorInterval must be positive")
	case c.SyncInterval <= 0:
		return errors.New("replication: SyncInterval must be positive")
	case c.ShutdownSyncTimeout <= 0:
		return errors.New("replication: ShutdownSyncTimeout must be positive")
	}
	return nil
}

// Replicator streams SQLite databases to an object store with one embedded
// Litestream store for the whole process. Databases attach and detach at
// run time as tenants activate and stop. Safe for concurrent use.
type Replicator struct {
	cfg    ReplicationConfig
	ls     *litestream.Store
	logger *slog.Logger
}

// NewReplicator returns a replicator; call Open before Attach.
func NewReplicator(cfg ReplicationConfig, logger *slog.Logger) (*Replicator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ls := litestream.NewStore(nil, litestream.DefaultCompactionLevels)
	ls.Logger = logger
	ls.ShutdownSyncTimeout = cfg.ShutdownSyncTimeout
	return &Replicator{cfg: cfg, ls: ls, logger: logger}, nil
}

// Open starts the background compaction and retention monitors.
func (r *Replicator) Open(ctx context.Context) error {
	return r.ls.Open(ctx)
}

// Close detaches every database that is still attached (with a final sync)
// and stops the monitors.
func (r *Replicator) Close(ctx context.Context) error {
	return r.ls.Close(ctx)
}

// Attach starts replicating the SQLite database at dbPath to client. Its
// Litestream state lives in metaPath, outside the database's directory
// tree that users back up. The application must keep its own connections
// open until Detach returns (closing Litestream's handle drops the
// process's POSIX locks).
func (r *Replicator) Attach(dbPath, metaPath string, client litestream.ReplicaClient) (*litestream.DB, error) {
	db := litestream.NewDB(dbPath)
	db.SetMetaPath(metaPath)
	db.MonitorInterval = r.cfg.MonitorInterval
	replica := litestream.NewReplicaWithClient(db, client)
	replica.SyncInterval = r.cfg.SyncInterval
	db.Replica = replica
	client.SetLogger(r.logger)
	if err := r.ls.RegisterDB(db); err != nil {
		return nil, fmt.Errorf("attach %s: %w", dbPath, err)
	}
	return db, nil
}

// Detach makes a final sync of the database to the object store and stops
// replicating it. Call it only after the application closed its own
// connections to the database.
func (r *Replicator) Detach(ctx context.Context, dbPath string) error {
	if err := r.ls.UnregisterDB(ctx, dbPath); err != nil {
		return fmt.Errorf("detach %s: %w", dbPath, err)
	}
	return nil
}

// Restore writes the newest state of the replica behind client to
// outputPath, which must not exist, and checks its integrity. It reports
// false (and writes nothing) when the replica holds no data yet.
func Restore(ctx context.Context, client litestream.ReplicaClient, outputPath string) (bool, error) {
	return RestoreAt(ctx, client, outputPath, time.Time{})
}

// RestoreAt is Restore to the state at timestamp (zero: the newest). It
// applies the replica's LTX files itself (restoreDirect) and leaves to
// Litestream's restore only what that does not handle.
func RestoreAt(ctx context.Context, client litestream.ReplicaClient, outputPath string, timestamp time.Time) (bool, error) {
	err := restoreDirect(ctx, client, outputPath, timestamp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, litestream.ErrNoSnapshots) || errors.Is(err, litestream.ErrTxNotAvailable):
		return false, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("restore %s: %w", outputPath, err)
	case !errors.Is(err, errUnsupportedPlan):
		slog.Warn("direct restore failed; restoring with Litestream", "path", outputPath, "error", err)
	}
	opt := litestream.NewRestoreOptions()
	opt.OutputPath = outputPath
	opt.Timestamp = timestamp
	opt.IntegrityCheck = litestream.IntegrityCheckFull
	err = litestream.NewReplicaWithClient(nil, ltxOnly{client}).Restore(ctx, opt)
	if errors.Is(err, litestream.ErrNoSnapshots) || errors.Is(err, litestream.ErrTxNotAvailable) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", outputPath, err)
	}
	return true, nil
}

// ltxOnly hides a replica client's support for Litestream 0.3's format:
// pbe never writes it, and asking for it costs a restore about a dozen
// extra listings (of 0.3 generations, then of every LTX level, to compare
// the two) before its own.
type ltxOnly struct{ litestream.ReplicaClient }

// OpenLTXFile buffers the file's stream: the restore decodes it in pieces
// of a few bytes to a page, each of which would otherwise be a read from
// the object store's response body or a system call.
func (c ltxOnly) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	rc, err := c.ReplicaClient.OpenLTXFile(ctx, level, minTXID, maxTXID, offset, size)
	if err != nil {
		return nil, err
	}
	return bufferedReadCloser{bufio.NewReaderSize(rc, restoreReadBuffer), rc}, nil
}

// restoreReadBuffer is the read buffer of each LTX file a restore opens.
const restoreReadBuffer = 256 << 10

type bufferedReadCloser struct {
	*bufio.Reader
	io.Closer
}
