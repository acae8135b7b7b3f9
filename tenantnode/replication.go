package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/pocketbase/pocketbase/core"
	"github.com/superfly/ltx"

	"github.com/pbe/pbe/cluster"
)

// errFenced is returned by a replica client that may no longer write: the
// node lost its lease or no longer owns the tenant.
var errFenced = errors.New("replication fenced: this node no longer holds the tenant")

// fencedClient refuses every write to the object store unless its fence
// lets it through: while the node still holds the tenant, and until the
// instance that owns the client has closed. The node check narrows, but
// cannot close, the window in which a paused node's upload lands after the
// tenant moved: the epoch in the replica path is what makes such an upload
// harmless.
type fencedClient struct {
	litestream.ReplicaClient
	fence *fence
}

func (c fencedClient) WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	if !c.fence.begin() {
		return nil, errFenced
	}
	defer c.fence.end()
	return c.ReplicaClient.WriteLTXFile(ctx, level, minTXID, maxTXID, r)
}

func (c fencedClient) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	if !c.fence.begin() {
		return errFenced
	}
	defer c.fence.end()
	return c.ReplicaClient.DeleteLTXFiles(ctx, a)
}

func (c fencedClient) DeleteAll(ctx context.Context) error {
	if !c.fence.begin() {
		return errFenced
	}
	defer c.fence.end()
	return c.ReplicaClient.DeleteAll(ctx)
}

// fence admits an instance's replica writes while allow says the node
// holds the tenant, until close. Litestream's compaction runs beside each
// database, not under it, and can still be writing when the database has
// closed; close refuses new writes and waits for those under way, so that
// once a tenant is released nothing more reaches its replica (an archive
// may then delete it, a new owner read it).
type fence struct {
	allow  func() bool
	mu     sync.Mutex
	closed bool
	writes sync.WaitGroup
}

func newFence(allow func() bool) *fence { return &fence{allow: allow} }

// begin admits one write, which end must follow.
func (f *fence) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || !f.allow() {
		return false
	}
	f.writes.Add(1)
	return true
}

func (f *fence) end() { f.writes.Done() }

// close refuses every later write and waits, until ctx ends, for the
// writes under way.
func (f *fence) close(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.writes.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("replica writes still under way at close: %w", ctx.Err())
	}
}

// report describes the instance for a heartbeat: its epoch and how far the
// object store trails its data.db.
func (inst *instance) report() cluster.TenantReport {
	r := cluster.TenantReport{ID: inst.tenant.ID, Epoch: inst.tenant.Epoch}
	now := time.Now()
	if inst.metrics != nil {
		tot := inst.metrics.Totals()
		r.Requests, r.Errors, r.Latency = tot.Requests, tot.Errors, tot.Latency
		r.PeakRequestsMinute, r.PeakRequestsHour = inst.metrics.PeakRequests(now)
	}
	if inst.quota != nil {
		r.DBBytes, r.FileBytes = inst.quota.dbBytes.Load(), inst.quota.fileBytes.Load()
		r.GrowthBytesPerHour = inst.quota.growthRate(now)
		r.RequestQuotaRefusals, r.StorageQuotaRefusals = inst.quota.refusedRequests.Load(), inst.quota.refusedWrites.Load()
	}
	if len(inst.dbs) == 0 {
		return r
	}
	db := inst.dbs[0] // data.db
	if pos, err := db.Pos(); err == nil {
		r.TXID = uint64(pos.TXID)
	}
	if db.Replica != nil {
		r.ReplicatedTXID = uint64(db.Replica.Pos().TXID)
	}
	synced := db.LastSuccessfulSyncAt()
	r.LastReplicatedAt = synced.UTC()
	// Litestream's positions alone can read in sync while the object
	// store is unreachable (a failed sync forgets the replica's position
	// and the database's may not move): a write since the last successful
	// sync is pending too.
	if r.ReplicatedTXID >= r.TXID && inst.wroteAt.Load() <= synced.UnixNano() {
		inst.inSyncAt.Store(now.UnixNano())
	} else if at := inst.inSyncAt.Load(); at > 0 {
		r.LagSeconds = now.Sub(time.Unix(0, at)).Seconds()
	}
	return r
}

// bindDurability makes a tenant in sync durability acknowledge each write
// only after its commit is in the object store: PocketBase's after-success
// model hooks run after the commit and before the response, and an error
// there fails the request. The hooks follow inst.syncWrites, so a change of
// durability applies to the next write. They also note each write's time
// for the replication lag (report).
func (inst *instance) bindDurability() {
	inst.syncWrites.Store(inst.tenant.Durability == cluster.DurabilitySync)
	if len(inst.dbs) == 0 {
		return
	}
	data := inst.dbs[0]
	wait := func(e *core.ModelEvent) error {
		if _, isLog := e.Model.(*core.Log); isLog {
			return e.Next()
		}
		inst.wroteAt.Store(time.Now().UnixNano())
		if inst.syncWrites.Load() {
			if err := data.SyncAndWait(e.Context); err != nil {
				return cluster.Errorf(cluster.ErrUnavailable, "the write was not confirmed durable in the object store; retry it")
			}
		}
		return e.Next()
	}
	inst.app.OnModelAfterCreateSuccess().BindFunc(wait)
	inst.app.OnModelAfterUpdateSuccess().BindFunc(wait)
	inst.app.OnModelAfterDeleteSuccess().BindFunc(wait)
}
