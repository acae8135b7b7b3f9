package raft

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pbe/pbe/cluster"
)

// ErrSnapshotCorrupt is wrapped by the error of a restore that refused a
// snapshot whose frame or checksum is wrong. The state is left unchanged.
var ErrSnapshotCorrupt = errors.New("snapshot is corrupt")

// ErrClusterMismatch is wrapped by the error of a restore that refused a
// snapshot from another cluster (the state is left unchanged), and by the
// error of a transport handshake, hence of AddVoter, with a node of another
// cluster.
var ErrClusterMismatch = errors.New("cluster mismatch")

// Snapshot frame: magic, cluster id (2-byte big-endian length, then the
// bytes), the state machine's stream, then a trailer of the stream's length
// (8 bytes big-endian) and the SHA-256 of everything before the trailer.
// raft's file store keeps its own CRC of the file, but a snapshot installed
// from the leader is written locally as received, so only this checksum
// covers it end to end.
var snapshotMagic = []byte("PBESNAP1")

const (
	snapshotTrailerLen = 8 + sha256.Size
	maxClusterIDLen    = 64
	// restoreTempPattern names the temporary copies Restore verifies before
	// loading; New removes any a crash left behind.
	restoreTempPattern = "snapshot-restore-*.tmp"
)

// applyResponse is the response of every applied LogCommand entry.
type applyResponse struct {
	Value any
	Err   error
}

// fsm adapts a StateMachine to raft.FSM, frames snapshots with a checksum
// and a cluster id, and applies the cluster-id entries of this package.
type fsm struct {
	sm     StateMachine
	dir    string
	logger *slog.Logger

	mu         sync.Mutex
	clusterID  string
	restoreErr error // the last Restore's error, for New's message

	snaps snapshotStats
}

// snapshotStats counts the snapshots this member persisted and how long
// they took, from the state machine's Snapshot to the sink's Close.
type snapshotStats struct {
	count atomic.Uint64
	total atomic.Int64 // nanoseconds
	last  atomic.Int64 // nanoseconds
}

func (s *snapshotStats) record(took time.Duration) {
	s.total.Add(int64(took))
	s.last.Store(int64(took))
	s.count.Add(1)
}

// SnapshotStats is what a member's snapshots have cost since it started.
type SnapshotStats struct {
	// Count is the snapshots persisted (failed ones are not counted).
	Count uint64
	// Total is their summed duration, Last the most recent one's: from
	// capturing the state machine to the snapshot file being closed.
	Total, Last time.Duration
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(sm StateMachine, dir, clusterID string, logger *slog.Logger) *fsm {
	return &fsm{sm: sm, dir: dir, clusterID: clusterID, logger: logger}
}

// Apply applies a committed LogCommand entry. The state machine's own
// errors are returned in the response; an error the state machine calls
// fatal stops the process (DESIGN.md invariant 2: a command that cannot be
// applied stops the node rather than being skipped).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if bytes.Equal(l.Extensions, clusterIDExtension) {
		return f.applyClusterID(l.Index, string(l.Data))
	}
	value, err := f.sm.Apply(l.Index, l.Data)
	return f.response(l.Index, value, err)
}

// response is what the proposer of the entry at index gets; a fatal error
// stops the node instead.
func (f *fsm) response(index uint64, value any, err error) applyResponse {
	if err != nil && f.sm.IsFatal(err) {
		f.fatal(index, err)
	}
	if cerr, ok := cluster.AsError(err); ok {
		f.logger.Debug("command rejected", logKeyIndex, index, "code", cerr.Code, logKeyErr, err)
	}
	return applyResponse{Value: value, Err: err}
}

// ApplyBatch applies a batch of committed entries (raft.BatchingFSM): runs
// of ordinary commands go to the state machine's ApplyBatch when it has
// one, everything else to Apply, in log order.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	batcher, ok := f.sm.(BatchApplier)
	var indexes []uint64
	var data [][]byte
	var at []int
	flush := func() {
		if len(at) == 0 {
			return
		}
		values, errs := batcher.ApplyBatch(indexes, data)
		for k, i := range at {
			out[i] = f.response(indexes[k], values[k], errs[k])
		}
		indexes, data, at = indexes[:0], data[:0], at[:0]
	}
	for i, l := range logs {
		if !ok || l.Type != raft.LogCommand || bytes.Equal(l.Extensions, clusterIDExtension) {
			flush()
			out[i] = f.Apply(l)
			continue
		}
		indexes, data, at = append(indexes, l.Index), append(data, l.Data), append(at, i)
	}
	flush()
	return out
}

// fatal logs and panics: the node must not go on past an entry it could not
// apply. Restarting replays the entry; an operator must fix the cause.
func (f *fsm) fatal(index uint64, err error) {
	f.logger.Error("cannot apply committed log entry; stopping the node", logKeyIndex, index, logKeyErr, err)
	panic(fmt.Sprintf("raft: cannot apply committed log entry %d: %v", index, err))
}

// ClusterID returns the adopted cluster id, "" until one is known.
func (f *fsm) ClusterID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clusterID
}

func (f *fsm) lastRestoreErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restoreErr
}

// Snapshot captures the state machine's snapshot and the cluster id; it
// does no I/O.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	snap, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot state machine: %w", err)
	}
	return &fsmSnapshot{snap: snap, clusterID: f.ClusterID(), start: start, stats: &f.snaps}, nil
}

type fsmSnapshot struct {
	snap      Snapshot
	clusterID string
	start     time.Time
	stats     *snapshotStats
}

// Persist writes the framed snapshot to sink and closes it, or cancels it
// on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.stats.record(time.Since(s.start))
	return nil
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := sha256.New()
	header := append(bytes.Clone(snapshotMagic), byte(len(s.clusterID)>>8), byte(len(s.clusterID)))
	header = append(header, s.clusterID...)
	body := &countingWriter{w: io.MultiWriter(bw, sum)}
	if _, err := body.Write(header); err != nil {
		return err
	}
	if err := s.snap.Persist(body); err != nil {
		return err
	}
	trailer := binary.BigEndian.AppendUint64(nil, uint64(body.n-int64(len(header))))
	if _, err := bw.Write(sum.Sum(trailer)); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *fsmSnapshot) Release() { s.snap.Release() }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore copies the snapshot to a temporary file, verifies its frame,
// checksum and cluster id, and only then has the state machine replace its
// state. A snapshot that fails a check is refused and the state is kept.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := f.restore(rc)
	f.mu.Lock()
	f.restoreErr = err
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	return nil
}

func (f *fsm) restore(r io.Reader) error {
	tmp, err := os.CreateTemp(f.dir, restoreTempPattern)
	if err != nil {
		return fmt.Errorf("create temporary copy: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	size, err := io.Copy(tmp, r)
	if err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	payload, clusterID, err := verifyFrame(tmp, size)
	if err != nil {
		return err
	}
	if err := f.checkClusterID(clusterID); err != nil {
		return err
	}
	if err := f.sm.Restore(bufio.NewReaderSize(payload, 64<<10)); err != nil {
		return fmt.Errorf("restore state machine: %w", err)
	}
	if clusterID != "" {
		f.adoptClusterID(clusterID)
	}
	return nil
}

// verifyFrame checks the frame of the size-byte snapshot in file and returns
// the state machine's stream and the cluster id it carries.
func verifyFrame(file *os.File, size int64) (*io.SectionReader, string, error) {
	minSize := int64(len(snapshotMagic) + 2 + snapshotTrailerLen)
	if size < minSize {
		return nil, "", fmt.Errorf("%w: %d bytes, shorter than an empty snapshot (%d); refusing it, state unchanged", ErrSnapshotCorrupt, size, minSize)
	}
	bodyLen := size - snapshotTrailerLen
	trailer := make([]byte, snapshotTrailerLen)
	if _, err := file.ReadAt(trailer, bodyLen); err != nil {
		return nil, "", fmt.Errorf("read snapshot trailer: %w", err)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(file, 0, bodyLen)); err != nil {
		return nil, "", fmt.Errorf("checksum snapshot: %w", err)
	}
	if !bytes.Equal(sum.Sum(nil), trailer[8:]) {
		return nil, "", fmt.Errorf("%w: SHA-256 checksum mismatch; refusing it, state unchanged", ErrSnapshotCorrupt)
	}
	head := make([]byte, len(snapshotMagic)+2)
	if _, err := file.ReadAt(head, 0); err != nil {
		return nil, "", fmt.Errorf("read snapshot header: %w", err)
	}
	idLen := int64(head[len(snapshotMagic)])<<8 | int64(head[len(snapshotMagic)+1])
	headerLen := int64(len(head)) + idLen
	payloadLen := int64(binary.BigEndian.Uint64(trailer[:8]))
	if !bytes.Equal(head[:len(snapshotMagic)], snapshotMagic) || idLen > maxClusterIDLen || headerLen+payloadLen != bodyLen {
		return nil, "", fmt.Errorf("%w: bad frame; refusing it, state unchanged", ErrSnapshotCorrupt)
	}
	id := make([]byte, idLen)
	if _, err := file.ReadAt(id, int64(len(head))); err != nil {
		return nil, "", fmt.Errorf("read snapshot header: %w", err)
	}
	return io.NewSectionReader(file, headerLen, payloadLen), string(id), nil
}

// removeRestoreTemps deletes temporary snapshot copies left by a crash.
func removeRestoreTemps(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, restoreTempPattern))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := os.Remove(name); err != nil {
			return err
		}
	}
	return nil
}
