package tenantnode

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/storage"
)

// replicaHas restores tenant id's data.db at epoch from the object store
// into a scratch file and reports whether it holds a post titled title.
func replicaHas(t *testing.T, n *node, id string, epoch uint64, title string) bool {
	t.Helper()
	prefix, err := storage.ReplicaPrefix(id, epoch, "data.db")
	if err != nil {
		t.Fatal(err)
	}
	client, err := n.objects.ReplicaClient(prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "data.db")
	if found, err := storage.Restore(context.Background(), client, out); err != nil || !found {
		t.Fatalf("restore replica of %s: found %v, %v", id, found, err)
	}
	db, err := sql.Open("sqlite", "file:"+out+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count int
	if err := db.QueryRow(`SELECT count(*) FROM posts WHERE title = ?`, title).Scan(&count); err != nil {
		return false // no posts table yet: nothing of it replicated
	}
	return count > 0
}

func TestUpdateTenant_DurabilityAppliesToTheNextWriteOfAnActiveTenant(t *testing.T) {
	// Replication that never syncs on its own: only sync durability (and
	// activation) puts writes in the object store.
	n := newNode(t, newRegistry(t), nil, func(c *Config) {
		c.Replication.MonitorInterval = time.Hour
		c.Replication.SyncInterval = time.Hour
	})
	ctx := context.Background()
	const id = "acme"
	n.setup(t, id)
	tn, err := n.reg.Tenant(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Durability == cluster.DurabilitySync {
		t.Fatal("a new tenant should start async")
	}
	// setDurability sends the record with durability d at epoch, as the
	// control plane's update order does.
	setDurability := func(id string, epoch uint64, d cluster.Durability) (bool, error) {
		rec := tn
		rec.ID, rec.Epoch, rec.Durability = id, epoch, d
		return n.UpdateTenant(ctx, rec)
	}

	n.post(t, id, "async-1")
	if replicaHas(t, n, id, tn.Epoch, "async-1") {
		t.Fatal("an async write reached the replica at once; the test cannot tell the modes apart")
	}

	changed, err := setDurability(id, tn.Epoch, cluster.DurabilitySync)
	if err != nil || !changed {
		t.Fatalf("UpdateTenant(sync): changed %v, %v", changed, err)
	}
	n.post(t, id, "sync-1")
	if !replicaHas(t, n, id, tn.Epoch, "sync-1") {
		t.Fatal("a write acknowledged in sync durability is not in the replica")
	}

	if _, err := setDurability(id, tn.Epoch, cluster.DurabilityAsync); err != nil {
		t.Fatal(err)
	}
	n.post(t, id, "async-2")
	if replicaHas(t, n, id, tn.Epoch, "async-2") {
		t.Fatal("after switching back to async, a write still waited for the object store")
	}

	// Another epoch's order, an inactive tenant, bad input: nothing changes.
	if changed, err := setDurability(id, tn.Epoch+1, cluster.DurabilitySync); err != nil || changed {
		t.Errorf("order for another epoch: changed %v, %v", changed, err)
	}
	if changed, err := setDurability("other", 1, cluster.DurabilitySync); err != nil || changed {
		t.Errorf("order for an inactive tenant: changed %v, %v", changed, err)
	}
	if _, err := setDurability(id, tn.Epoch, "eventually"); !errors.Is(err, cluster.ErrInvalidInput) {
		t.Errorf("unknown durability: got %v, want invalid input", err)
	}
	if _, err := setDurability("../x", 1, cluster.DurabilitySync); err == nil {
		t.Error("a malformed tenant id was accepted")
	}
}
