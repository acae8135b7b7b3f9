package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Snapshot is the store's state at one instant. It is an alias of an
// unnamed interface type so that *Store satisfies a consumer's interface
// that declares the same alias (the raft package's StateMachine), with no
// import either way.
type Snapshot = interface {
	// Persist writes the state to w. It may run concurrently with Apply and
	// with reads, and is called at most once.
	Persist(w io.Writer) error
	// Release frees the snapshot. It must be called, whether or not Persist
	// was; it is safe to call twice.
	Release()
}

// Snapshot stream format: magic, applied index (8 bytes big-endian), then
// records (uvarint key length, key, uvarint value length, value), then a
// zero key length and the record count (8 bytes). The stream carries no
// checksum of its own: the raft package frames it with one.
var snapshotMagic = []byte("PBESTOR1")

// Snapshot record limits: Badger's own key limit, and a bound on values so
// a damaged length cannot make Restore allocate without limit.
const (
	maxSnapshotKeyLen   = 65000
	maxSnapshotValueLen = 64 << 20
)

// Snapshot captures the state as of now, cheaply: it opens a read-only
// Badger transaction (a fixed read timestamp) and does no I/O; Persist does
// the I/O. Until it is released, Restore and Close wait for it.
//
// Badger's own Stream/Backup cannot be used here: outside managed mode a
// Stream opens its own transactions when it runs, so it would not read at
// the instant Snapshot was called.
func (s *Store) Snapshot() (Snapshot, error) {
	s.stateMu.RLock()
	if s.closed || s.broken != nil {
		s.stateMu.RUnlock()
		if s.closed {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("snapshot: state is incomplete after a failed restore: %w", s.broken)
	}
	txn := s.db.NewTransaction(false)
	applied, err := readApplied(txn)
	if err != nil {
		txn.Discard()
		s.stateMu.RUnlock()
		return nil, fmt.Errorf("snapshot: read applied index: %w", err)
	}
	return &snapshot{s: s, txn: txn, applied: applied}, nil
}

type snapshot struct {
	s       *Store
	txn     *badger.Txn
	applied uint64
	once    sync.Once
}

// Persist streams every record of the snapshot's transaction to w.
func (sn *snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(snapshotMagic)
	bw.Write(binary.BigEndian.AppendUint64(nil, sn.applied))
	var count uint64
	it := sn.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if string(item.Key()) == string(keyApplied) {
			continue
		}
		err := item.Value(func(v []byte) error {
			writeBytes(bw, item.Key())
			writeBytes(bw, v)
			return nil
		})
		if err != nil {
			return fmt.Errorf("persist snapshot: read %s: %w", item.Key(), err)
		}
		count++
	}
	bw.Write(binary.AppendUvarint(nil, 0))
	bw.Write(binary.BigEndian.AppendUint64(nil, count))
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return nil
}

// Release discards the snapshot's transaction and lets Restore and Close
// proceed.
func (sn *snapshot) Release() {
	sn.once.Do(func() {
		sn.txn.Discard()
		sn.s.stateMu.RUnlock()
	})
}

// writeBytes writes a uvarint length and b. bufio.Writer keeps its first
// error and reports it at Flush.
func writeBytes(bw *bufio.Writer, b []byte) {
	bw.Write(binary.AppendUvarint(nil, uint64(len(b))))
	bw.Write(b)
}

// Restore replaces all state, the applied index included, with the snapshot
// read from r (written by Snapshot.Persist). A stream that does not start
// with the snapshot magic is refused before anything changes. After that,
// the old state is dropped; if the stream then turns out to be damaged, or
// storage fails, the store refuses to Apply until a later Restore succeeds
// (the node must restore again, e.g. by restarting). It waits for live
// snapshots to be released, and must not be called concurrently with Apply.
func (s *Store) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	applied, err := readSnapshotHeader(br)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.db.DropAll(); err != nil {
		s.broken = err
		return fmt.Errorf("restore: drop old state: %w", err)
	}
	s.applied.Store(0)
	s.horizon, s.eventHorizon, s.auditHorizon = timeHorizon{}, timeHorizon{}, timeHorizon{}
	if err := s.load(br, applied); err != nil {
		s.broken = err
		return fmt.Errorf("restore: %w", err)
	}
	s.broken = nil
	s.applied.Store(applied)
	s.authGen.Add(1)
	s.eventsWritten()
	s.feed.publish(Change{Index: applied, Kind: ChangeReset})
	s.logger.Info("restored state from snapshot", logKeyIndex, applied)
	return nil
}

func readSnapshotHeader(br *bufio.Reader) (uint64, error) {
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(br, head); err != nil {
		return 0, fmt.Errorf("read snapshot header: %w", err)
	}
	if string(head[:len(snapshotMagic)]) != string(snapshotMagic) {
		return 0, errors.New("not a store snapshot (bad magic)")
	}
	return binary.BigEndian.Uint64(head[len(snapshotMagic):]), nil
}

// load writes the snapshot's records, then the applied index last, so a
// load cut short leaves no applied index behind.
func (s *Store) load(br *bufio.Reader, applied uint64) error {
	wb := s.db.NewWriteBatch()
	flushed := false
	defer func() {
		if !flushed {
			wb.Cancel()
		}
	}()
	var count uint64
	for {
		key, err := readBytes(br, maxSnapshotKeyLen)
		if err != nil {
			return fmt.Errorf("read record %d: %w", count, err)
		}
		if len(key) == 0 {
			break
		}
		val, err := readBytes(br, maxSnapshotValueLen)
		if err != nil {
			return fmt.Errorf("read record %d: %w", count, err)
		}
		if err := wb.Set(key, val); err != nil {
			return fmt.Errorf("write record %d: %w", count, err)
		}
		count++
	}
	var want [8]byte
	if _, err := io.ReadFull(br, want[:]); err != nil {
		return fmt.Errorf("read record count: %w", err)
	}
	if n := binary.BigEndian.Uint64(want[:]); n != count {
		return fmt.Errorf("snapshot has %d records, its trailer says %d", count, n)
	}
	flushed = true
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	return s.db.Update(func(txn *badger.Txn) error { return writeApplied(txn, applied) })
}

// readBytes reads a uvarint length (at most limit) and that many bytes.
func readBytes(br *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("length %d exceeds %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}
