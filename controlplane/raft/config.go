package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is a voter of the cluster: its node id and its Raft address
// (host:port; for the in-memory transport, anything).
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Config configures a Node. Start from DefaultConfig and set NodeID and Dir.
type Config struct {
	// NodeID is this node's id, unique in the cluster for all time.
	NodeID string
	// Dir holds the Raft state: the raft-wal log and stable store in
	// Dir/wal, snapshots in Dir/snapshots and the cluster id in
	// Dir/cluster-id.
	Dir string
	// BindAddr is the host:port the TCP transport listens on. Empty selects
	// raft's in-memory transport: a single node that talks to no one.
	BindAddr string
	// AdvertiseAddr is the host:port peers reach this node at. Required when
	// BindAddr's host is unspecified (0.0.0.0 or ::); defaults to BindAddr.
	AdvertiseAddr string
	// Peers are the initial voters, this node included; empty means just this
	// node. They are used once, to bootstrap a node with no Raft state;
	// restarting with the same Peers is safe, and later membership changes go
	// through AddVoter and RemoveServer.
	Peers []Peer
	// Join starts the node without bootstrapping: it waits to be added to an
	// existing cluster with AddVoter. Peers must be empty.
	Join bool
	// ClusterSecret authenticates the nodes of a cluster to each other: every
	// TCP connection starts with a handshake in which both sides prove they
	// know it (see the package doc). Required with BindAddr, at least
	// MinClusterSecretLen bytes, the same on every node. Draw it at random
	// (say 32 random bytes, hex-encoded): a recorded handshake lets a
	// guessable secret be guessed offline. The in-memory transport does not
	// use it. String and LogValue redact it.
	ClusterSecret string
	// WrapStreamLayer, if set, wraps the TCP transport's stream layer: raft
	// dials and accepts through the layer it returns, which must keep the
	// wrapped layer's Addr. What it wraps dials and accepts only
	// connections that passed the handshake. It is for tests (injecting
	// network faults) and for adding TLS on top of the handshake (a TLS
	// connection should expose the authenticated one with NetConn, as
	// tls.Conn does, so AddVoter can check the peer's node id). Unused by
	// the in-memory transport.
	WrapStreamLayer func(raft.StreamLayer) raft.StreamLayer

	// HeartbeatTimeout is how long a follower goes without contact from the
	// leader before it starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits before starting another
	// election.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without reaching a
	// quorum; at most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how long the leader waits, with nothing to send,
	// before telling followers the latest commit index.
	CommitTimeout time.Duration
	// SnapshotInterval is how often Raft checks whether to take a snapshot
	// (staggered between 1x and 2x).
	SnapshotInterval time.Duration
	// SnapshotThreshold is how many new log entries trigger a snapshot.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries are kept after a snapshot, so a
	// follower that is a little behind catches up from the log. It is a
	// minimum: raft-wal drops entries a whole segment at a time (see
	// LogSegmentSize) and serves every entry of a segment it keeps.
	TrailingLogs uint64
	// LogSegmentSize is the size in bytes at which raft-wal starts a new
	// segment file of the log. Compaction removes whole segments only, so
	// up to one segment more than TrailingLogs stays on disk and is sent to
	// lagging followers instead of a snapshot.
	LogSegmentSize int
	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int
	// TransportTimeout bounds one Raft RPC (other than snapshot install).
	TransportTimeout time.Duration
	// MaxPool is how many idle TCP connections are kept per peer.
	MaxPool int
	// ApplyTimeout bounds Apply, Barrier and membership changes whose context
	// has no deadline.
	ApplyTimeout time.Duration
}

// Defaults, for a cluster on loopback or a LAN. A follower notices a dead
// leader after 1x-2x HeartbeatTimeout and the election itself takes a few
// round trips, so a new leader is usually elected within about a second.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	// Control-plane state is small and changes rarely, so snapshots are
	// cheap and the log is kept short enough to replay quickly on start.
	DefaultSnapshotInterval  = 2 * time.Minute
	DefaultSnapshotThreshold = 8192
	DefaultTrailingLogs      = 10240
	DefaultSnapshotRetain    = 2
	// DefaultLogSegmentSize is raft-wal's own default.
	DefaultLogSegmentSize   = 64 << 20
	DefaultTransportTimeout = 10 * time.Second
	DefaultMaxPool          = 3
	DefaultApplyTimeout     = 10 * time.Second
)

// Limits on Config values.
const (
	maxNodeIDLen      = 128
	minRaftTimeout    = 5 * time.Millisecond
	minLogSegmentSize = 4 << 10
)

// DefaultConfig returns a Config with the defaults above, the in-memory
// transport and no NodeID or Dir (both required).
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
		SnapshotInterval:   DefaultSnapshotInterval,
		SnapshotThreshold:  DefaultSnapshotThreshold,
		TrailingLogs:       DefaultTrailingLogs,
		SnapshotRetain:     DefaultSnapshotRetain,
		LogSegmentSize:     DefaultLogSegmentSize,
		TransportTimeout:   DefaultTransportTimeout,
		MaxPool:            DefaultMaxPool,
		ApplyTimeout:       DefaultApplyTimeout,
	}
}

// configError names the field at fault.
func configError(field, format string, args ...any) error {
	return fmt.Errorf("raft config: %s: %s", field, fmt.Sprintf(format, args...))
}

// Validate reports the first invalid field; its error names it.
func (c Config) Validate() error {
	for _, check := range []func() error{c.validateIdentity, c.validateAddrs, c.validateSecret, c.validatePeers, c.validateTimings} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) validateIdentity() error {
	switch {
	case c.NodeID == "":
		return configError("NodeID", "required")
	case len(c.NodeID) > maxNodeIDLen:
		return configError("NodeID", "%d bytes, at most %d allowed", len(c.NodeID), maxNodeIDLen)
	case strings.ContainsFunc(c.NodeID, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return configError("NodeID", "%q contains spaces or control characters", c.NodeID)
	case c.Dir == "":
		return configError("Dir", "required")
	}
	return nil
}

func (c Config) validateAddrs() error {
	if c.BindAddr == "" {
		if c.AdvertiseAddr != "" {
			return configError("AdvertiseAddr", "set without BindAddr (the in-memory transport is not reachable)")
		}
		if c.Join {
			return configError("Join", "needs BindAddr: the in-memory transport cannot join a cluster")
		}
		return nil
	}
	host, err := splitAddr(c.BindAddr, true)
	if err != nil {
		return configError("BindAddr", "%v", err)
	}
	if c.AdvertiseAddr == "" {
		if unspecified(host) {
			return configError("AdvertiseAddr", "required when BindAddr %q has an unspecified host", c.BindAddr)
		}
		return nil
	}
	host, err = splitAddr(c.AdvertiseAddr, false)
	if err != nil {
		return configError("AdvertiseAddr", "%v", err)
	}
	if unspecified(host) {
		return configError("AdvertiseAddr", "%q: peers cannot reach an unspecified host", c.AdvertiseAddr)
	}
	return nil
}

func (c Config) validateSecret() error {
	switch {
	case c.BindAddr == "":
		return nil
	case c.ClusterSecret == "":
		return configError("ClusterSecret", "required with BindAddr: the TCP transport admits only nodes that know it")
	case len(c.ClusterSecret) < MinClusterSecretLen:
		return configError("ClusterSecret", "%d bytes, at least %d required", len(c.ClusterSecret), MinClusterSecretLen)
	}
	return nil
}

func (c Config) validatePeers() error {
	if c.Join && len(c.Peers) > 0 {
		return configError("Peers", "must be empty with Join (a joining node is added by the leader)")
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	self := false
	for i, p := range c.Peers {
		switch {
		case p.ID == "" || p.Addr == "":
			return configError("Peers", "entry %d: id and addr are required", i)
		case ids[p.ID]:
			return configError("Peers", "id %q appears twice", p.ID)
		case addrs[p.Addr]:
			return configError("Peers", "addr %q appears twice", p.Addr)
		}
		ids[p.ID], addrs[p.Addr] = true, true
		self = self || p.ID == c.NodeID
	}
	if len(c.Peers) > 0 && !self {
		return configError("Peers", "must include this node (%q)", c.NodeID)
	}
	if c.BindAddr == "" && len(c.Peers) > 1 {
		return configError("Peers", "the in-memory transport (no BindAddr) runs a single node; got %d peers", len(c.Peers))
	}
	return nil
}

func (c Config) validateTimings() error {
	switch {
	case c.HeartbeatTimeout < minRaftTimeout:
		return configError("HeartbeatTimeout", "%s is below %s", c.HeartbeatTimeout, minRaftTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return configError("ElectionTimeout", "%s is below HeartbeatTimeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout < minRaftTimeout || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return configError("LeaderLeaseTimeout", "%s must be between %s and HeartbeatTimeout (%s)", c.LeaderLeaseTimeout, minRaftTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond:
		return configError("CommitTimeout", "%s is below 1ms", c.CommitTimeout)
	case c.SnapshotInterval < minRaftTimeout:
		return configError("SnapshotInterval", "%s is below %s", c.SnapshotInterval, minRaftTimeout)
	case c.SnapshotThreshold == 0:
		return configError("SnapshotThreshold", "must be positive")
	case c.SnapshotRetain < 1:
		return configError("SnapshotRetain", "must be at least 1")
	case c.LogSegmentSize < minLogSegmentSize || c.LogSegmentSize > math.MaxUint32:
		return configError("LogSegmentSize", "%d bytes, want %d to %d", c.LogSegmentSize, minLogSegmentSize, math.MaxUint32)
	case c.TransportTimeout <= 0:
		return configError("TransportTimeout", "must be positive")
	case c.MaxPool < 1:
		return configError("MaxPool", "must be at least 1")
	case c.ApplyTimeout <= 0:
		return configError("ApplyTimeout", "must be positive")
	}
	return nil
}

// splitAddr checks a host:port and returns the host. Port 0 (pick a free
// port) is allowed only when zeroPortOK.
func splitAddr(addr string, zeroPortOK bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if n == 0 && !zeroPortOK {
		return "", errors.New("port 0 cannot be advertised")
	}
	return host, nil
}

// unspecified reports whether host is empty, 0.0.0.0 or ::.
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// redactedConfig has Config's fields but not its methods, so String can
// format it without calling itself.
type redactedConfig Config

// String formats the config with ClusterSecret redacted.
func (c Config) String() string {
	if c.ClusterSecret != "" {
		c.ClusterSecret = "REDACTED"
	}
	return fmt.Sprintf("%+v", redactedConfig(c))
}

// LogValue logs the config as String does, with ClusterSecret redacted.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
