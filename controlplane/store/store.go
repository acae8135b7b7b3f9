// Package store keeps the control plane's state (tenants, operator tokens,
// recorded request results) in BadgerDB and is the deterministic state
// machine that Raft drives.
//
// Invariants:
//
//   - Determinism. Apply's outcome depends only on the current state, the
//     Raft index and the command bytes: times come from Command.Time, nothing
//     reads the clock, draws random numbers or ranges over a map.
//   - Atomicity. Every applied command and the new applied index are written
//     in one Badger transaction, so the stored applied index always names the
//     last command whose effects are stored. Entries at or below it are
//     skipped, which makes log replay after a restart safe.
//   - A command's own failure (duplicate id, unknown tenant, stale version)
//     is a *cluster.Error: the entry still counts as applied and changes
//     nothing else. Any other Apply error (undecodable or unknown command,
//     storage failure) is fatal: the node must stop rather than skip the
//     entry (DESIGN.md invariant 2). IsFatal tells the two apart.
//   - Idempotency. A command with a request id has its result recorded in the
//     same transaction; a later command with the same id returns that result
//     and changes nothing. Records expire 24h after their Command.Time.
//   - Restore replaces all state, the applied index included.
//
// Badger runs with SyncWrites off: the Raft log is the durable record, and
// the raft package restores the latest snapshot on start and replays the log
// after it.
//
// This package does not import the raft package; the raft package calls the
// store through its StateMachine interface.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// Badger sizing. The control plane's state is small (thousands of records),
// so the defaults meant for large databases (64 MiB memtables, 1 GiB value
// log files, 256 MiB block cache) only cost memory and disk. Memtables are
// 32 MiB rather than 8: a tenant create writes about seven keys, and at
// thousands of creates a second the smaller ones flushed to level 0 (and
// were compacted) every few seconds, about 8% of the cluster's throughput
// (docs/benchmarks.md). Their memory is taken as they fill.
const (
	badgerMemTableSize     = 32 << 20
	badgerValueLogFileSize = 64 << 20
	badgerBlockCacheSize   = 16 << 20
	badgerNumCompactors    = 2
)

// logKeyIndex is the log attribute key of a Raft index.
const logKeyIndex = "index"

// Key layout. Every key starts with a one-letter namespace and a slash; the
// rest is the record's id, so prefix iteration returns records sorted by id.
var (
	keyApplied        = []byte("m/applied")
	prefixTenant      = []byte("t/")
	prefixToken       = []byte("k/")
	prefixTokenHash   = []byte("h/")
	prefixRequest     = []byte("r/")
	prefixRequestTime = []byte("q/")
	prefixMember      = []byte("c/")
	prefixNode        = []byte("n/")
	prefixDomain      = []byte("d/")
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("store: closed")

// Store is the control plane's Badger-backed state. Reads may be called
// concurrently with each other and with Apply; Apply and Restore are
// serialised (Raft calls them from one goroutine, and the store also locks).
type Store struct {
	db     *badger.DB
	logger *slog.Logger

	// applyMu serialises Apply and Restore.
	applyMu sync.Mutex
	// stateMu is held for reading by reads, Apply and live snapshots, and for
	// writing by Restore and Close, so no reader sees a half-restored state.
	stateMu sync.RWMutex
	closed  bool
	// broken is set when a Restore failed after dropping the old state; the
	// store then refuses to apply until a Restore succeeds.
	broken error

	applied atomic.Uint64
	authGen atomic.Uint64
	gc      gcStats // value-log GC counts, disk.go

	eventsMu sync.Mutex
	eventsCh chan struct{} // closed when events are written
	feed     feed

	// horizon, guarded by applyMu, lets Apply skip looking for expired
	// request records when none can be expired.
	horizon timeHorizon
	// eventHorizon and auditHorizon do the same for the event and audit
	// logs.
	eventHorizon, auditHorizon timeHorizon
}

// TenantFilter selects tenants in Tenants.
type TenantFilter struct {
	// State keeps only tenants in this state; "" keeps all.
	State cluster.TenantState
}

// Open opens the Badger database in dir, creating it if needed. SyncWrites is
// off: the Raft log is the durable record. A nil logger discards logs.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "store")
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(false).
		WithLogger(badgerLogger{logger.With("logger", "badger")}).
		WithMemTableSize(badgerMemTableSize).
		WithValueLogFileSize(badgerValueLogFileSize).
		WithBlockCacheSize(badgerBlockCacheSize).
		WithNumCompactors(badgerNumCompactors).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger in %s: %w", dir, err)
	}
	s := &Store{db: db, logger: logger, eventsCh: make(chan struct{})}
	var applied uint64
	err = db.View(func(txn *badger.Txn) error {
		var err error
		applied, err = readApplied(txn)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("read applied index: %w", err)
	}
	s.applied.Store(applied)
	return s, nil
}

// Close closes the database. It waits for live snapshots to be released.
// Calling it again returns nil. Stop the Raft node first: Apply on a closed
// store is a fatal error.
func (s *Store) Close() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close badger: %w", err)
	}
	return nil
}

// Size returns the on-disk size of the LSM tree and of the value log, as
// Badger last computed it (it refreshes them periodically; no I/O here).
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }

// AppliedIndex returns the Raft index of the last applied entry (0 for an
// empty store). Reads reflect at least this index.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// Tenant returns the tenant with this id, live or deleted. It returns
// cluster.ErrTenantNotFound for an unknown or purged id. The read is local:
// at most as stale as AppliedIndex.
func (s *Store) Tenant(id string) (cluster.Tenant, error) {
	var t cluster.Tenant
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, tenantKey(id), &t)
		if err != nil {
			return err
		}
		if !found {
			return cluster.Errorf(cluster.ErrTenantNotFound, "tenant %q not found", id)
		}
		return nil
	})
	return t, err
}

// Tenants returns the tenants that match f, sorted by ID. An unknown
// f.State is cluster.ErrInvalidInput.
func (s *Store) Tenants(f TenantFilter) ([]cluster.Tenant, error) {
	switch f.State {
	case "", cluster.TenantActive, cluster.TenantDeleted:
	default:
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "unknown tenant state %q (want %q or %q)", f.State, cluster.TenantActive, cluster.TenantDeleted)
	}
	out := []cluster.Tenant{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixTenant, func(t *cluster.Tenant) {
			if f.State == "" || t.State == f.State {
				out = append(out, *t)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TokenByHash returns the operator token whose secret hashes to hash (see
// cluster.HashToken), with its Hash set. It returns cluster.ErrTokenNotFound
// if there is none.
func (s *Store) TokenByHash(hash string) (cluster.Token, error) {
	var tok cluster.Token
	err := s.view(func(txn *badger.Txn) error {
		var id string
		found, err := getJSON(txn, tokenHashKey(hash), &id)
		if err == nil && found {
			var st storedToken
			if found, err = getJSON(txn, tokenKey(id), &st); found {
				tok = st.token()
			}
		}
		if err != nil {
			return err
		}
		if !found {
			return cluster.Errorf(cluster.ErrTokenNotFound, "no operator token matches")
		}
		return nil
	})
	return tok, err
}

// Tokens returns every operator token, with Hash set, sorted by CreatedAt
// then ID.
func (s *Store) Tokens() ([]cluster.Token, error) {
	out := []cluster.Token{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixToken, func(st *storedToken) { out = append(out, st.token()) })
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b cluster.Token) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// view runs fn in a read-only transaction, unless the store is closed.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

func tenantKey(id string) []byte      { return append(slices.Clip(prefixTenant), id...) }
func tokenKey(id string) []byte       { return append(slices.Clip(prefixToken), id...) }
func tokenHashKey(hash string) []byte { return append(slices.Clip(prefixTokenHash), hash...) }
func requestKey(rid string) []byte    { return append(slices.Clip(prefixRequest), rid...) }

// readApplied returns the applied index stored in txn (0 if none).
func readApplied(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(keyApplied)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var applied uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("applied index is %d bytes, want 8", len(v))
		}
		applied = binary.BigEndian.Uint64(v)
		return nil
	})
	return applied, err
}

func writeApplied(txn *badger.Txn, index uint64) error {
	return txn.Set(keyApplied, binary.BigEndian.AppendUint64(nil, index))
}

// getJSON decodes the value at key into v and reports whether it exists.
func getJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	if err != nil {
		return true, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return txn.Set(key, b)
}

// scanJSON decodes every value under prefix, in key order, and passes each to
// fn. The pointer is reused between calls.
func scanJSON[T any](txn *badger.Txn, prefix []byte, fn func(*T)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var v T
		err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) })
		if err != nil {
			return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
		}
		fn(&v)
	}
	return nil
}

// badgerLogger sends Badger's logs to slog. Badger is chatty at Info
// (compactions, flushes), so its Info is logged at Debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) {
	b.log(slog.LevelWarn, f, a)
}
func (b badgerLogger) Infof(f string, a ...any)  { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any) { b.log(slog.LevelDebug-4, f, a) }

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
