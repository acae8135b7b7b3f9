package store

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

// populate applies a mix of commands, request ids included.
func populate(t *testing.T, s *Store) {
	t.Helper()
	mustApply(t, s, cmd{typ: CmdCreateTenant, rid: "req-a", payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: "Acme"}}})
	mustApply(t, s, createTenant("beta"))
	mustApply(t, s, deleteTenant("beta"))
	mustApply(t, s, cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Node: ptr("n1"), Epoch: ptr[uint64](1)}})
	mustApply(t, s, createToken("tok1", "hash1"))
	mustApply(t, s, createToken("tok2", "hash2"))
	mustApply(t, s, cmd{typ: CmdRevokeToken, payload: RevokeToken{ID: "tok2"}})
}

func TestStore_SnapshotRestore(t *testing.T) {
	t.Run("restore into a fresh store gives identical state", func(t *testing.T) {
		src := openStore(t)
		populate(t, src)
		stream := persisted(t, src)

		dst := openStore(t)
		if err := dst.Restore(bytes.NewReader(stream)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if got, want := dst.AppliedIndex(), src.AppliedIndex(); got != want {
			t.Errorf("AppliedIndex: got %d, want %d", got, want)
		}
		if got, want := stateJSON(t, dst), stateJSON(t, src); !bytes.Equal(got, want) {
			t.Errorf("state:\n got %s\nwant %s", got, want)
		}
		if got := persisted(t, dst); !bytes.Equal(got, stream) {
			t.Error("snapshot of the restored store differs from the one restored")
		}
		// Request-id records came along: a retry returns the recorded result.
		retry := cmd{typ: CmdCreateTenant, rid: "req-a", payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}}
		rs, errS := applyNext(t, src, retry)
		rd, errD := applyNext(t, dst, retry)
		if errS != nil || errD != nil || !reflect.DeepEqual(rs, rd) {
			t.Errorf("retry after restore: got (%+v, %v), want (%+v, %v)", rd, errD, rs, errS)
		}
	})
	t.Run("restore replaces existing state and applied index", func(t *testing.T) {
		src := openStore(t)
		populate(t, src)
		stream := persisted(t, src)

		dst := openStore(t)
		for i := range 12 {
			mustApply(t, dst, createToken(fmt.Sprint("other-", i), fmt.Sprint("other-hash-", i)))
		}
		mustApply(t, dst, createTenant("gamma"))
		if err := dst.Restore(bytes.NewReader(stream)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if got, want := dst.AppliedIndex(), src.AppliedIndex(); got != want {
			t.Errorf("AppliedIndex: got %d, want %d (the snapshot's, even though it is lower)", got, want)
		}
		if got, want := stateJSON(t, dst), stateJSON(t, src); !bytes.Equal(got, want) {
			t.Errorf("state:\n got %s\nwant %s", got, want)
		}
		if _, err := dst.Tenant("gamma"); !errors.Is(err, cluster.ErrTenantNotFound) {
			t.Errorf("Tenant(gamma): got %v, want ErrTenantNotFound", err)
		}
	})
	t.Run("snapshot is the state when it was taken", func(t *testing.T) {
		src := openStore(t)
		populate(t, src)
		want := stateJSON(t, src)
		applied := src.AppliedIndex()
		snap, err := src.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, src, createTenant("later"))
		var buf bytes.Buffer
		err = snap.Persist(&buf)
		snap.Release()
		snap.Release()
		if err != nil {
			t.Fatal(err)
		}
		dst := openStore(t)
		if err := dst.Restore(&buf); err != nil {
			t.Fatal(err)
		}
		if got := stateJSON(t, dst); !bytes.Equal(got, want) || dst.AppliedIndex() != applied {
			t.Errorf("state at index %d:\n got %s\nwant %s", dst.AppliedIndex(), got, want)
		}
	})
	t.Run("restored store survives reopen", func(t *testing.T) {
		src := openStore(t)
		populate(t, src)
		dir := t.TempDir()
		dst, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.Restore(bytes.NewReader(persisted(t, src))); err != nil {
			t.Fatal(err)
		}
		_ = dst.Close()
		dst, err = Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		if got, want := stateJSON(t, dst), stateJSON(t, src); !bytes.Equal(got, want) || dst.AppliedIndex() != src.AppliedIndex() {
			t.Errorf("state after reopen at index %d:\n got %s\nwant %s", dst.AppliedIndex(), got, want)
		}
	})
}

func TestStore_RestoreDamaged(t *testing.T) {
	src := openStore(t)
	populate(t, src)
	stream := persisted(t, src)

	t.Run("bad magic changes nothing", func(t *testing.T) {
		dst := openStore(t)
		mustApply(t, dst, createTenant("gamma"))
		before := persisted(t, dst)
		bad := bytes.Clone(stream)
		bad[0] ^= 0xff
		if err := dst.Restore(bytes.NewReader(bad)); err == nil {
			t.Fatal("Restore: got nil, want an error")
		}
		if !bytes.Equal(before, persisted(t, dst)) || dst.AppliedIndex() != 1 {
			t.Error("a refused restore changed the state")
		}
		if _, err := applyNext(t, dst, createTenant("delta")); err != nil {
			t.Errorf("Apply after refused restore: %v", err)
		}
	})
	t.Run("truncated stream leaves the store refusing to apply", func(t *testing.T) {
		dst := openStore(t)
		err := dst.Restore(bytes.NewReader(stream[:len(stream)-20]))
		if err == nil {
			t.Fatal("Restore: got nil, want an error")
		}
		_, err = dst.Apply(dst.AppliedIndex()+1, createTenant("delta").bytes())
		if err == nil || !dst.IsFatal(err) {
			t.Fatalf("Apply after failed restore: got %v, want a fatal error", err)
		}
		if err := dst.Restore(bytes.NewReader(stream)); err != nil {
			t.Fatalf("second Restore: %v", err)
		}
		if _, err := dst.Apply(dst.AppliedIndex()+1, createTenant("delta").bytes()); err != nil {
			t.Errorf("Apply after good restore: %v", err)
		}
	})
	t.Run("restore waits for live snapshots", func(t *testing.T) {
		dst := openStore(t)
		snap, err := dst.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- dst.Restore(bytes.NewReader(stream)) }()
		select {
		case err := <-done:
			t.Fatalf("Restore returned (%v) while a snapshot was live", err)
		case <-time.After(50 * time.Millisecond):
		}
		snap.Release()
		if err := <-done; err != nil {
			t.Fatalf("Restore: %v", err)
		}
	})
}
