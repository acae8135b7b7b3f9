package controlplane

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Control-plane metric descriptions (metrics package doc lists them all).
var (
	descRaftTerm = prometheus.NewDesc("pbe_raft_term",
		"Current Raft term of this member.", nil, nil)
	descRaftCommit = prometheus.NewDesc("pbe_raft_commit_index",
		"Raft commit index of this member.", nil, nil)
	descRaftApplied = prometheus.NewDesc("pbe_raft_applied_index",
		"Raft index last applied to the registry by this member.", nil, nil)
	descRaftSnapshot = prometheus.NewDesc("pbe_raft_last_snapshot_index",
		"Raft index of this member's last snapshot.", nil, nil)
	descRaftLeaderKnown = prometheus.NewDesc("pbe_raft_leader_known",
		"1 when this member knows a leader, else 0.", nil, nil)
	descRaftIsLeader = prometheus.NewDesc("pbe_raft_is_leader",
		"1 when this member is the leader, else 0.", nil, nil)
	descBadgerSize = prometheus.NewDesc("pbe_badger_size_bytes",
		"On-disk size of the registry's Badger database, by part (lsm, vlog), as Badger last computed it.", []string{"part"}, nil)
	descRaftLeaderChanges = prometheus.NewDesc("pbe_raft_leader_changes_total",
		"Changes of leader this member has seen since it started (sampled: see leaderSampleInterval).", nil, nil)
	descRaftSnapshotDuration = prometheus.NewDesc("pbe_raft_snapshot_duration_seconds",
		"Time this member's Raft snapshots took, from capturing the registry to the snapshot file closed (persisted snapshots only).", nil, nil)
	descRaftLastSnapshotDuration = prometheus.NewDesc("pbe_raft_last_snapshot_duration_seconds",
		"Time this member's last persisted Raft snapshot took.", nil, nil)
	descBadgerGCDuration = prometheus.NewDesc("pbe_badger_vlog_gc_duration_seconds",
		"Time the registry's Badger value-log GC runs took; the count is the runs.", nil, nil)
	descBadgerGCRewrites = prometheus.NewDesc("pbe_badger_vlog_gc_rewrites_total",
		"Badger value-log files the GC rewrote.", nil, nil)
	descRegistryTenants = prometheus.NewDesc("pbe_registry_tenants",
		"Tenants in the registry, by state (active, archived or deleted).", []string{"state"}, nil)
)

// leaderSampleInterval is how often the leader is sampled to count leader
// changes: a change and its reversal within one interval are not counted.
const leaderSampleInterval = 100 * time.Millisecond

// MetricsCollector returns a collector that reads the control plane's
// Raft status, Badger size and tenant count when scraped. Call it once,
// after Start: it also starts counting leader changes, until Stop. A
// scrape reads every tenant record once (a local read, no Raft round
// trip).
func (c *ControlPlane) MetricsCollector() prometheus.Collector {
	cc := &cpCollector{c: c}
	if c.raft != nil {
		c.goBackground(cc.countLeaderChanges)
	}
	return cc
}

type cpCollector struct {
	c             *ControlPlane
	leaderChanges atomic.Uint64
}

// countLeaderChanges samples the leader until ctx ends and counts each
// time a leader other than the last one known takes over.
func (cc *cpCollector) countLeaderChanges(ctx context.Context) {
	last, _ := cc.c.raft.Leader()
	t := time.NewTicker(leaderSampleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id, _ := cc.c.raft.Leader()
		if id == "" || id == last {
			continue
		}
		if last != "" {
			cc.leaderChanges.Add(1)
		}
		last = id
	}
}

func (cc *cpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftTerm, descRaftCommit, descRaftApplied, descRaftSnapshot,
		descRaftLeaderKnown, descRaftIsLeader, descRaftLeaderChanges, descRaftSnapshotDuration, descRaftLastSnapshotDuration,
		descBadgerSize, descBadgerGCDuration, descBadgerGCRewrites, descRegistryTenants} {
		ch <- d
	}
}

func (cc *cpCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if n := cc.c.raft; n != nil {
		st := n.Status()
		gauge(descRaftTerm, float64(st.Term))
		gauge(descRaftCommit, float64(st.CommitIndex))
		gauge(descRaftApplied, float64(st.AppliedIndex))
		gauge(descRaftSnapshot, float64(st.LastSnapshotIndex))
		gauge(descRaftLeaderKnown, boolValue(st.LeaderID != ""))
		gauge(descRaftIsLeader, boolValue(st.Role == "leader"))
		ch <- prometheus.MustNewConstMetric(descRaftLeaderChanges, prometheus.CounterValue, float64(cc.leaderChanges.Load()))
		snaps := n.SnapshotStats()
		ch <- prometheus.MustNewConstSummary(descRaftSnapshotDuration, snaps.Count, snaps.Total.Seconds(), nil)
		gauge(descRaftLastSnapshotDuration, snaps.Last.Seconds())
	}
	lsm, vlog := cc.c.store.Size()
	gauge(descBadgerSize, float64(lsm), "lsm")
	gauge(descBadgerSize, float64(vlog), "vlog")
	gc := cc.c.store.ValueLogGCStats()
	ch <- prometheus.MustNewConstSummary(descBadgerGCDuration, gc.Runs, gc.Total.Seconds(), nil)
	ch <- prometheus.MustNewConstMetric(descBadgerGCRewrites, prometheus.CounterValue, float64(gc.Rewrites))
	if tenants, err := cc.c.store.Tenants(store.TenantFilter{}); err == nil {
		counts := map[cluster.TenantState]int{cluster.TenantActive: 0, cluster.TenantArchived: 0, cluster.TenantDeleted: 0}
		for _, t := range tenants {
			counts[t.ShownState()]++
		}
		for state, n := range counts {
			gauge(descRegistryTenants, float64(n), string(state))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
