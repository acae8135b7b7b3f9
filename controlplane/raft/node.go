// Package raft runs the control plane's Raft node: hashicorp/raft with
// raft-wal as log and stable store, a file snapshot store, and an
// authenticated TCP transport (or raft's in-memory transport for a single
// node). It is generic: it drives a StateMachine (the control plane's store)
// and knows nothing of commands.
//
// Invariants:
//
//   - A write is acknowledged (Apply returns) only after its entry is
//     committed on a quorum and applied on this node; Apply returns the state
//     machine's own result and error.
//   - Every committed entry is applied, in order, or the process stops: an
//     entry the state machine reports as fatal (StateMachine.IsFatal) is
//     logged and panics, never skipped.
//   - A node bootstraps at most once: only when it has no Raft state at all.
//   - Snapshots carry a SHA-256 checksum and the cluster id. Restore verifies
//     both on a temporary copy before the state machine drops anything, so a
//     corrupt or foreign snapshot never destroys state.
//   - On start, raft restores the latest snapshot and replays the log after
//     it; the state machine skips entries it has already applied. The state
//     machine's own storage need not be durable: the log is.
//   - Raft reads or writes nothing on a TCP connection before the handshake
//     (handshake.go, inside TLS) has authenticated its peer: a fresh random
//     nonce from each side, and an HMAC-SHA256 under Config.ClusterSecret
//     from each side over the TLS channel binding, both nonces, its node id
//     and its cluster id. Without the secret
//     nobody can vote, append entries or install a snapshot.
//   - A node never exchanges entries with a node known to be of another
//     cluster: the handshake refuses a peer whose cluster id differs from
//     this node's, and AddVoter refuses a node it cannot authenticate. An
//     empty id is accepted: a node waiting to join has none, and neither
//     has a new cluster until its first leader has proposed one (see
//     clusterid.go).
//
// The traffic runs in TLS 1.3: it is encrypted and integrity-protected,
// so whoever watches or sits on the network path reads and changes
// nothing. Each node's certificate is made at start and not checked;
// instead the handshake's MACs cover the TLS session's channel binding,
// so a node that proves the secret also proves that the session ends at
// it, and there are no certificates to issue or rotate.
// Config.WrapStreamLayer wraps the authenticated layer (tests use it to
// inject faults). Someone in the middle still receives a client's proof
// (for the session it runs with the client) and could guess a guessable
// secret from it offline, so the secret must be random.
package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Log attribute keys.
const (
	logKeyNode   = "node"
	logKeyIndex  = "index"
	logKeyTerm   = "term"
	logKeyLeader = "leader"
	logKeyErr    = "err"
)

// Snapshot is a state machine's state at one instant. It is an alias of an
// unnamed interface so that a state machine declaring the same alias (as
// the store does) satisfies StateMachine without importing this package.
type Snapshot = interface {
	// Persist writes the state to w; it may run concurrently with Apply.
	Persist(w io.Writer) error
	// Release frees the snapshot; it is always called.
	Release()
}

// StateMachine is what the node applies committed entries to.
//
// Apply, Snapshot and Restore are called from one goroutine, never
// concurrently with each other; Snapshot.Persist runs concurrently with
// Apply. Apply must be deterministic: the same state, index and data always
// give the same state and result, on every node. Entries arrive in index
// order, possibly with gaps (entries that are not commands), and after a
// restart may include entries at or below what the state machine already
// applied: Apply must skip those.
type StateMachine interface {
	// Apply applies the committed entry data at Raft index index and returns
	// the command's result and its own error; both are returned to the
	// proposer. Results and errors must survive a JSON round trip.
	Apply(index uint64, data []byte) (any, error)
	// IsFatal reports whether an error Apply returned means the entry could
	// not be applied (undecodable, unknown, storage failure) rather than
	// being the command's own outcome. On a fatal error the node stops.
	IsFatal(err error) bool
	// Snapshot captures the current state quickly; I/O belongs in Persist.
	Snapshot() (Snapshot, error)
	// Restore replaces all state, including the applied index, with the
	// stream one Snapshot.Persist wrote.
	Restore(r io.Reader) error
}

// BatchApplier is implemented by a StateMachine that can apply several
// consecutive committed entries at once, with the same results as applying
// them one by one (after a fatal error, the entries that follow it are not
// applied and return an error too).
type BatchApplier interface {
	ApplyBatch(indexes []uint64, data [][]byte) ([]any, []error)
}

// CommandChecker is implemented by a StateMachine that can check a command
// before it is proposed. Apply then refuses a command the state machine
// could not apply, instead of committing an entry that would stop every
// node.
type CommandChecker interface {
	CheckCommand(data []byte) error
}

// ErrOutcomeUnknown is wrapped by Apply's error when the command was
// proposed but this node cannot tell whether it was committed (leadership
// lost, the context ended, the node shut down). Retry with the same request
// id: the state machine then applies it at most once. The error also wraps
// cluster.ErrUnavailable.
var ErrOutcomeUnknown = errors.New("outcome of the write is unknown; retry with the same request id")

// Node is a running Raft node. Its methods may be called concurrently.
type Node struct {
	cfg    Config
	logger *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	sm     StateMachine
	wal    *wal.WAL
	// walMeta is the WAL's metadata store: WAL.Close leaves it open (and
	// its file locked), so the node closes it itself.
	walMeta *metadb.BoltMetaDB
	addr    string
	// stream is the (wrapped) stream layer of the TCP transport and auth the
	// authenticated layer inside it; both nil with the in-memory transport.
	stream raft.StreamLayer
	auth   *authLayer

	// leaderCh is LeadershipChanges' channel; leading is the last value
	// sent on it. Only watch sends, and Stop after watch has ended.
	leaderCh chan bool
	leading  bool

	ctx      context.Context // cancelled by Stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// New opens the node's Raft state in cfg.Dir, bootstraps the cluster if the
// node has no state at all (and cfg.Join is false), and starts the node. On
// start, raft restores the latest snapshot into sm and replays the log after
// it. A nil logger discards logs. sm stays the caller's to close, after
// Stop.
func New(cfg Config, sm StateMachine, logger *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sm == nil {
		return nil, errors.New("raft: nil state machine")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "raft", logKeyNode, cfg.NodeID)
	n := &Node{cfg: cfg, logger: logger, sm: sm, leaderCh: make(chan bool, 1)}
	if err := n.open(); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.watch()
	return n, nil
}

// open creates the stores, the transport and the raft instance, and
// bootstraps if needed. On error it releases what it opened.
func (n *Node) open() (err error) {
	cfg := n.cfg
	clusterID, err := prepareDir(cfg.Dir)
	if err != nil {
		return err
	}
	hl := newHCLog(n.logger)
	if err := n.openLog(hl); err != nil {
		return err
	}
	var trans raft.Transport
	defer func() {
		if err != nil {
			closeTransport(trans)
			_ = n.closeLog()
		}
	}()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, hl.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("raft: open snapshot store: %w", err)
	}
	// The fsm comes first: the transport's handshake reads its cluster id.
	n.fsm = newFSM(n.sm, cfg.Dir, clusterID, n.logger)
	if trans, n.stream, n.auth, err = newTransport(cfg, hl, n.fsm.ClusterID, n.logger); err != nil {
		return err
	}
	n.addr = string(trans.LocalAddr())
	if err := checkSelfAddr(cfg, n.addr); err != nil {
		return err
	}
	return n.startRaft(hl, snaps, trans)
}

// prepareDir creates dir, removes what a crash may have left in it, and
// returns the cluster id stored there ("" if none).
func prepareDir(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		return "", fmt.Errorf("raft: create %s: %w", dir, err)
	}
	if err := removeRestoreTemps(dir); err != nil {
		return "", fmt.Errorf("raft: remove temporary snapshot copies: %w", err)
	}
	clusterID, err := readClusterID(dir)
	if err != nil {
		return "", fmt.Errorf("raft: %w", err)
	}
	return clusterID, nil
}

// openLog opens the raft-wal log and stable store in Dir/wal.
func (n *Node) openLog(hl *hclogAdapter) error {
	walDir := filepath.Join(n.cfg.Dir, "wal")
	n.walMeta = &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithLogger(hl.Named("wal")), wal.WithMetaStore(n.walMeta), wal.WithSegmentSize(n.cfg.LogSegmentSize))
	if err != nil {
		_ = n.walMeta.Close()
		return fmt.Errorf("raft: open log in %s: %w", walDir, err)
	}
	n.wal = w
	return nil
}

// logCacheEntries is how many of the newest log entries are kept in memory
// (a few times what one append batch carries).
const logCacheEntries = 1024

// startRaft starts raft (which restores the latest snapshot and replays the
// log) and bootstraps a node that had no state at all.
func (n *Node) startRaft(hl *hclogAdapter, snaps raft.SnapshotStore, trans raft.Transport) error {
	existing, err := raft.HasExistingState(n.wal, n.wal, snaps)
	if err != nil {
		return fmt.Errorf("raft: inspect existing state: %w", err)
	}
	// The newest entries stay in memory: the leader sends them to followers
	// and a follower applies them right after appending them, so without
	// the cache both read back from the segment file what they just wrote.
	logs, err := raft.NewLogCache(logCacheEntries, n.wal)
	if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	if n.raft, err = raft.NewRaft(n.raftConfig(hl), n.fsm, logs, n.wal, snaps, trans); err != nil {
		if rerr := n.fsm.lastRestoreErr(); rerr != nil {
			return fmt.Errorf("raft: start: %w (snapshot restore failed: %w)", err, rerr)
		}
		if serr := openSnapshots(snaps); serr != nil {
			return fmt.Errorf("raft: start: %w (%w)", err, serr)
		}
		return fmt.Errorf("raft: start: %w", err)
	}
	if !existing && !n.cfg.Join {
		if err := n.bootstrap(); err != nil {
			_ = n.raft.Shutdown().Error()
			return err
		}
	}
	n.logger.Info("raft node started", "addr", n.addr, "existing_state", existing, "join", n.cfg.Join)
	return nil
}

// openSnapshots opens every stored snapshot (which checks raft's CRC) and
// returns the first failure, to explain why raft could not start.
func openSnapshots(snaps raft.SnapshotStore) error {
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	for _, m := range metas {
		_, rc, err := snaps.Open(m.ID)
		if err != nil {
			return fmt.Errorf("%w: snapshot %s cannot be opened: %w", ErrSnapshotCorrupt, m.ID, err)
		}
		_ = rc.Close()
	}
	return nil
}

// bootstrap writes the initial configuration: cfg.Peers, or this node
// alone.
func (n *Node) bootstrap() error {
	servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.addr)}}
	if len(n.cfg.Peers) > 0 {
		servers = servers[:0]
		for _, p := range n.cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("raft: bootstrap: %w", err)
	}
	n.logger.Info("bootstrapped cluster", "voters", len(servers))
	return nil
}

func (n *Node) raftConfig(hl *hclogAdapter) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
	// Proposals queue up to MaxAppendEntries deep instead of each waiting
	// for the leader loop to take it, so concurrent writes share one log
	// append and fsync. Apply's own timeout then covers only the queueing;
	// callers wait on the future with their context (waitFuture).
	rc.BatchApplyCh = true
	rc.Logger = hl
	// Restore the latest snapshot on start: with the state machine skipping
	// entries it already applied, this keeps it consistent with the durable
	// log even when its own writes were not synced.
	rc.NoSnapshotRestoreOnStart = false
	rc.ShutdownOnRemove = true
	return rc
}

// checkSelfAddr refuses Peers whose entry for this node is not the address
// the transport advertises: peers would dial the wrong address.
func checkSelfAddr(cfg Config, addr string) error {
	if cfg.BindAddr == "" {
		return nil
	}
	for _, p := range cfg.Peers {
		if p.ID == cfg.NodeID && p.Addr != addr {
			return configError("Peers", "entry for this node (%q) has addr %q, but it advertises %q", p.ID, p.Addr, addr)
		}
	}
	return nil
}

// watch logs leadership changes, passes them on to LeadershipChanges and,
// on the leader, makes sure the cluster has an id. It runs until Stop.
func (n *Node) watch() {
	defer n.wg.Done()
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	retry := time.NewTicker(clusterIDRetry)
	defer retry.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-obsCh:
			lo := o.Data.(raft.LeaderObservation)
			n.logger.Info("leader changed", logKeyLeader, string(lo.LeaderID), "leader_addr", string(lo.LeaderAddr), logKeyTerm, n.raft.CurrentTerm())
		case isLeader := <-n.raft.LeaderCh():
			n.publishLeadership(isLeader)
			if isLeader {
				n.logger.Info("became leader", logKeyTerm, n.raft.CurrentTerm())
				n.ensureClusterID()
			} else {
				n.logger.Info("lost leadership", logKeyTerm, n.raft.CurrentTerm())
			}
		case <-retry.C:
			n.ensureClusterID()
		}
	}
}

// Stop shuts the node down and waits for its goroutines; it closes the log
// and the transport but not the state machine, and closes the channel of
// LeadershipChanges (after a last false if the node was leading). It is
// idempotent.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.cancel()
		err := n.raft.Shutdown().Error()
		n.wg.Wait()
		if n.leading {
			n.publishLeadership(false)
		}
		close(n.leaderCh)
		if cerr := n.closeLog(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err != nil {
			n.stopErr = fmt.Errorf("raft: stop: %w", err)
		}
		n.logger.Info("raft node stopped")
	})
	return n.stopErr
}

// closeLog closes the WAL and its metadata store.
func (n *Node) closeLog() error {
	err := n.wal.Close()
	if merr := n.walMeta.Close(); merr != nil {
		err = errors.Join(err, merr)
	}
	if err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}

// ClusterID returns the cluster's id: "" until the first leader of a new
// cluster has proposed one and this node has applied it (or restored a
// snapshot carrying it). It is persisted in Dir/cluster-id.
func (n *Node) ClusterID() string { return n.fsm.ClusterID() }

// Addr returns the Raft address this node advertises.
func (n *Node) Addr() string { return n.addr }
