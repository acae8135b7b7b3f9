package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pbe/pbe/cluster"
)

// leaderPollInterval is how often WaitForLeader checks for a leader.
const leaderPollInterval = 20 * time.Millisecond

// Apply proposes cmd and waits until it is committed and applied on this
// node, which must be the leader; ctx bounds the wait. It returns the state
// machine's result and its own error (for the store, a *cluster.Error).
//
// Other errors: on a follower, or with no leader, one matching
// cluster.ErrNotLeader (nothing was proposed; ask Leader where to send it).
// If the command was proposed but its fate is unknown (leadership lost, ctx
// ended, shutdown), one wrapping ErrOutcomeUnknown and
// cluster.ErrUnavailable: retry with the same request id. A command the
// state machine's CheckCommand refuses is not proposed.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	if err := n.usable(ctx); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if n.raft.State() != raft.Leader {
		return nil, fmt.Errorf("apply: %w", n.notLeader())
	}
	if c, ok := n.sm.(CommandChecker); ok {
		if err := c.CheckCommand(cmd); err != nil {
			return nil, fmt.Errorf("apply: refusing to propose: %w", err)
		}
	}
	f := n.raft.Apply(cmd, n.timeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return nil, n.proposalError("apply", err)
	}
	resp, ok := f.Response().(applyResponse)
	if !ok {
		return nil, fmt.Errorf("apply: unexpected response %T from the state machine", f.Response())
	}
	return resp.Value, resp.Err
}

// Barrier waits until every entry committed before it is applied on this
// node, which must be the leader. A read after Barrier returns is
// linearizable.
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.usable(ctx); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("barrier: %w", n.notLeader())
	}
	if err := waitFuture(ctx, n.raft.Barrier(n.timeout(ctx))); err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("barrier: %w", n.notLeader())
		}
		return n.proposalError("barrier", err)
	}
	return nil
}

// AddVoter adds (or re-addresses) a voting member; only on the leader. It
// returns once the new configuration is committed.
//
// Unless id is already a voter at addr, it first connects to addr through
// the transport and refuses, without changing the configuration, a node it
// cannot reach (wrapping cluster.ErrUnavailable), one that fails the
// handshake (wrapping ErrHandshakeFailed, and ErrClusterMismatch for a
// node of another cluster) or one whose node id is not id
// (cluster.ErrInvalidInput): a voter that can never answer would only
// lower the cluster's tolerance of failures, and a single node adding one
// would stall. With the in-memory transport it refuses every peer.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return cluster.Errorf(cluster.ErrInvalidInput, "add voter: id and addr are required")
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("add voter %s: %w", id, n.notLeader())
	}
	if err := n.checkNewVoter(ctx, id, addr); err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.timeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return n.proposalError("add voter "+id, err)
	}
	n.logger.Info("added voter", "peer", id, "peer_addr", addr)
	return nil
}

// checkNewVoter connects to addr through the transport (handshake
// included) to see that the node there can become voter id.
func (n *Node) checkNewVoter(ctx context.Context, id, addr string) error {
	if slices.Contains(n.Members(), Peer{ID: id, Addr: addr}) {
		return nil
	}
	if n.stream == nil {
		return cluster.Errorf(cluster.ErrInvalidInput, "%v", errNoStreamLayer)
	}
	conn, err := n.stream.Dial(raft.ServerAddress(addr), min(n.cfg.TransportTimeout, n.timeout(ctx)))
	if errors.Is(err, ErrHandshakeFailed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w (%w)", addr, err, cluster.ErrUnavailable)
	}
	defer conn.Close()
	if peer, ok := peerID(conn); ok && peer != id {
		return cluster.Errorf(cluster.ErrInvalidInput, "the node at %s is %q, not %q", addr, peer, id)
	}
	return nil
}

// RemoveServer removes a member; only on the leader. It returns once the new
// configuration is committed. A removed node shuts its Raft down.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if id == "" {
		return cluster.Errorf(cluster.ErrInvalidInput, "remove server: id is required")
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("remove server %s: %w", id, n.notLeader())
	}
	if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, n.timeout(ctx))); err != nil {
		return n.proposalError("remove server "+id, err)
	}
	n.logger.Info("removed server", "peer", id)
	return nil
}

// Snapshot takes a snapshot now and compacts the log. It wraps
// raft.ErrNothingNewToSnapshot when nothing was applied since the last one.
func (n *Node) Snapshot(ctx context.Context) error {
	if err := waitFuture(ctx, n.raft.Snapshot()); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// IsLeader reports whether this node is the leader right now (it may learn
// otherwise a moment later; use Barrier for a linearizable read).
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the id and address of the leader this node knows of, or
// empty strings.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitForLeader returns once this node knows of a leader, or with ctx's
// error.
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(leaderPollInterval)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-n.ctx.Done():
			return fmt.Errorf("wait for leader: %w", cluster.ErrShuttingDown)
		case <-t.C:
		}
	}
}

// notLeader is the error for a write or barrier on a node that is not the
// leader; its message names the leader if one is known.
func (n *Node) notLeader() error {
	id, addr := n.Leader()
	if id == "" {
		return cluster.ErrNotLeader
	}
	return cluster.Errorf(cluster.ErrNotLeader, "this control-plane node is not the leader; the leader is %s at %s", id, addr)
}

// proposalError maps the error of a proposal future. op names the
// operation.
func (n *Node) proposalError(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before it was appended to the log.
		return fmt.Errorf("%s: %w", op, n.notLeader())
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%s: timed out before it was proposed: %w", op, cluster.ErrUnavailable)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%s: leadership lost before it committed: %w (%w)", op, ErrOutcomeUnknown, cluster.ErrUnavailable)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%s: %w (%w)", op, ErrOutcomeUnknown, cluster.ErrShuttingDown)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w (%w)", op, err, ErrOutcomeUnknown, cluster.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// usable returns an error if ctx has ended or the node is stopping.
func (n *Node) usable(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return cluster.ErrShuttingDown
	}
	return ctx.Err()
}

// withTimeout bounds ctx by Config.ApplyTimeout if it has no deadline.
func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.ApplyTimeout)
}

// timeout returns how long raft may wait to enqueue a proposal: until ctx's
// deadline, else Config.ApplyTimeout.
func (n *Node) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return n.cfg.ApplyTimeout
}

// waitFuture waits for f or ctx. A future is always resolved by raft (at the
// latest on shutdown), so the goroutine ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
