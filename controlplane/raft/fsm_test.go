package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/crc64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// newTestFSM returns an fsm over a fresh store, with logs in logs.
func newTestFSM(t *testing.T, clusterID string, logs io.Writer) (*fsm, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	logger := slog.New(slog.NewTextHandler(logs, nil))
	return newFSM(st, t.TempDir(), clusterID, logger), st
}

func applyLog(f *fsm, index uint64, data []byte) any {
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
}

// persistFSM returns the framed snapshot of f.
func persistFSM(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("Persist: %v (sink closed: %v)", err, sink.closed)
	}
	return sink.Bytes()
}

func TestFSM_Apply(t *testing.T) {
	f, st := newTestFSM(t, "", io.Discard)
	resp := applyLog(f, 1, createTenantCmd("acme", ""))
	if r, ok := resp.(applyResponse); !ok || r.Err != nil || r.Value.(cluster.Tenant).ID != "acme" {
		t.Fatalf("response: got %#v, want the tenant", resp)
	}
	resp = applyLog(f, 2, createTenantCmd("acme", ""))
	if r := resp.(applyResponse); !errors.Is(r.Err, cluster.ErrTenantExists) {
		t.Errorf("duplicate: got %v, want ErrTenantExists", r.Err)
	}
	if resp := f.Apply(&raft.Log{Index: 3, Type: raft.LogNoop}); resp != nil {
		t.Errorf("noop entry: got %v, want nil", resp)
	}
	if st.AppliedIndex() != 2 {
		t.Errorf("applied index: got %d, want 2", st.AppliedIndex())
	}
}

// TestFSM_ApplyFatal: an entry the store cannot apply stops the node (a
// panic, which kills the process) instead of being skipped.
func TestFSM_ApplyFatal(t *testing.T) {
	var logs logBuffer
	f, st := newTestFSM(t, "", &logs)
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("Apply of an unknown command did not panic")
			}
		}()
		applyLog(f, 1, []byte(`{"type":"drop_everything","v":1,"data":{}}`))
	}()
	if st.AppliedIndex() != 0 {
		t.Errorf("applied index: got %d, want 0 (the entry was not applied)", st.AppliedIndex())
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "cannot apply") {
		t.Errorf("logs: got %q, want an error about the entry", logs.String())
	}
}

func TestFSM_SnapshotRestore(t *testing.T) {
	src, srcStore := newTestFSM(t, "cluster-a", io.Discard)
	applyLog(src, 1, createTenantCmd("acme", ""))
	applyLog(src, 2, createTenantCmd("beta", ""))
	framed := persistFSM(t, src)

	t.Run("round trip", func(t *testing.T) {
		dst, dstStore := newTestFSM(t, "", io.Discard)
		if err := dst.Restore(io.NopCloser(bytes.NewReader(framed))); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		want, _ := srcStore.Tenants(store.TenantFilter{})
		got, _ := dstStore.Tenants(store.TenantFilter{})
		if !slices.Equal(tenantIDList(got), tenantIDList(want)) || dstStore.AppliedIndex() != 2 {
			t.Errorf("restored: got %v at %d, want %v at 2", tenantIDList(got), dstStore.AppliedIndex(), tenantIDList(want))
		}
		if dst.ClusterID() != "cluster-a" {
			t.Errorf("cluster id: got %q, want cluster-a (adopted from the snapshot)", dst.ClusterID())
		}
		if entries, _ := filepath.Glob(filepath.Join(dst.dir, restoreTempPattern)); len(entries) != 0 {
			t.Errorf("temporary copies left behind: %v", entries)
		}
	})
	damaged := []struct {
		name      string
		data      []byte
		clusterID string
		want      error
	}{
		{"flipped byte in the state", flip(framed, len(framed)/2), "", ErrSnapshotCorrupt},
		{"flipped byte in the header", flip(framed, 3), "", ErrSnapshotCorrupt},
		{"flipped byte in the checksum", flip(framed, len(framed)-1), "", ErrSnapshotCorrupt},
		{"truncated", framed[:len(framed)-10], "", ErrSnapshotCorrupt},
		{"empty", nil, "", ErrSnapshotCorrupt},
		{"another cluster", framed, "cluster-b", ErrClusterMismatch},
	}
	for _, tc := range damaged {
		t.Run(tc.name, func(t *testing.T) {
			dst, dstStore := newTestFSM(t, tc.clusterID, io.Discard)
			applyLog(dst, 1, createTenantCmd("keep", ""))
			err := dst.Restore(io.NopCloser(bytes.NewReader(tc.data)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore: got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "state unchanged") {
				t.Errorf("error %q does not say the state is unchanged", err)
			}
			got, _ := dstStore.Tenants(store.TenantFilter{})
			if !slices.Equal(tenantIDList(got), []string{"keep"}) || dstStore.AppliedIndex() != 1 {
				t.Errorf("state after refused restore: got %v at %d, want [keep] at 1", tenantIDList(got), dstStore.AppliedIndex())
			}
		})
	}
}

func TestFSM_ClusterIDEntry(t *testing.T) {
	f, _ := newTestFSM(t, "", io.Discard)
	entry := func(index uint64, id string) {
		f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: []byte(id), Extensions: clusterIDExtension})
	}
	entry(1, "first")
	entry(2, "second")
	if got := f.ClusterID(); got != "first" {
		t.Errorf("cluster id: got %q, want first (the first entry wins)", got)
	}
	if got, err := readClusterID(f.dir); err != nil || got != "first" {
		t.Errorf("cluster-id file: got %q, %v; want first", got, err)
	}
}

func tenantIDList(ts []cluster.Tenant) []string {
	ids := []string{}
	for _, t := range ts {
		ids = append(ids, t.ID)
	}
	return ids
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

// corruptSnapshot flips a byte in the middle of the newest snapshot's state
// file in dir. With fixCRC it also rewrites raft's CRC in meta.json, as if
// the damage had happened before raft's file store saw the bytes (a
// snapshot installed from the leader), so only this package's checksum can
// catch it.
func corruptSnapshot(t *testing.T, dir string, fixCRC bool) {
	t.Helper()
	snaps, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot in %s (%v)", dir, err)
	}
	slices.Sort(snaps)
	statePath := snaps[len(snaps)-1]
	state, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	state[len(state)/2] ^= 0x40
	if err := os.WriteFile(statePath, state, 0o600); err != nil {
		t.Fatal(err)
	}
	if !fixCRC {
		return
	}
	metaPath := filepath.Join(filepath.Dir(statePath), "meta.json")
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(state)
	meta["CRC"] = h.Sum(nil)
	if raw, err = json.Marshal(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
