package raft

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster id names one cluster for all time, so that nodes of two
// clusters are never mistaken for each other. It is drawn at random by the
// first leader of a new cluster, which proposes it as a log entry of this
// package (a LogCommand whose Extensions are clusterIDExtension; the state
// machine never sees it). Every node adopts the first such entry it applies,
// or the id in a snapshot it restores, and keeps it in Dir/cluster-id.
// A snapshot from another cluster is refused.

// clusterIDFile is the file, in Config.Dir, that holds the cluster id.
const clusterIDFile = "cluster-id"

// clusterIDTimeout bounds one attempt to propose a cluster id;
// clusterIDRetry is how often a leader without one tries again.
const (
	clusterIDTimeout = 10 * time.Second
	clusterIDRetry   = 5 * time.Second
)

// clusterIDExtension marks the log entries that carry a cluster id.
var clusterIDExtension = []byte("pbe.cluster-id.v1")

// newClusterID returns a random cluster id.
func newClusterID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// readClusterID returns the id in dir's cluster-id file, "" if there is none.
func readClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" || len(id) > maxClusterIDLen {
		return "", fmt.Errorf("read cluster id: %s holds %d bytes, want 1 to %d", clusterIDFile, len(id), maxClusterIDLen)
	}
	return id, nil
}

// writeClusterID stores id in dir's cluster-id file: temp file, fsync,
// rename, fsync of the directory.
func writeClusterID(dir, id string) error {
	tmp, err := os.CreateTemp(dir, clusterIDFile+"-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, clusterIDFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// applyClusterID applies a cluster-id entry: the first one adopted wins, so
// every node ends with the same id. A different id later is logged and
// ignored.
func (f *fsm) applyClusterID(index uint64, id string) any {
	if id == "" || len(id) > maxClusterIDLen {
		f.logger.Error("ignoring malformed cluster id entry", logKeyIndex, index)
		return nil
	}
	if current := f.ClusterID(); current != "" {
		if current != id {
			f.logger.Error("ignoring cluster id entry for another cluster", logKeyIndex, index, "cluster_id", current, "entry_cluster_id", id)
		}
		return nil
	}
	f.adoptClusterID(id)
	return nil
}

// adoptClusterID sets and persists the cluster id if none is set yet.
func (f *fsm) adoptClusterID(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clusterID != "" {
		return
	}
	f.clusterID = id
	if err := writeClusterID(f.dir, id); err != nil {
		// The id is in the log and in every later snapshot, so it is adopted
		// again on the next start; only the file is missing meanwhile.
		f.logger.Error("cannot persist cluster id", "cluster_id", id, logKeyErr, err)
		return
	}
	f.logger.Info("cluster id adopted", "cluster_id", id)
}

// checkClusterID refuses a snapshot of another cluster.
func (f *fsm) checkClusterID(snapshotID string) error {
	current := f.ClusterID()
	if current != "" && snapshotID != "" && current != snapshotID {
		return fmt.Errorf("%w: snapshot of cluster %s, this node is in cluster %s; refusing it, state unchanged", ErrClusterMismatch, snapshotID, current)
	}
	return nil
}

// ensureClusterID proposes a cluster id if this node leads a cluster that
// has none. The barrier first applies every earlier entry, so a proposal
// from a previous leader is seen before a second one is made.
func (n *Node) ensureClusterID() {
	if n.fsm.ClusterID() != "" || !n.IsLeader() {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, clusterIDTimeout)
	defer cancel()
	if err := n.Barrier(ctx); err != nil {
		n.logger.Warn("cannot set the cluster id yet", logKeyErr, err)
		return
	}
	if n.fsm.ClusterID() != "" {
		return
	}
	f := n.raft.ApplyLog(raft.Log{Data: []byte(newClusterID()), Extensions: clusterIDExtension}, clusterIDTimeout)
	if err := waitFuture(ctx, f); err != nil {
		n.logger.Warn("cannot set the cluster id yet", logKeyErr, err)
	}
}
