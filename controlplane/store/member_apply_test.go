package store

import (
	"context"
	"errors"
	"testing"

	"github.com/pbe/pbe/cluster"
)

func TestStore_Members(t *testing.T) {
	s := openStore(t)
	m1 := cluster.Member{ID: "cp-1", RaftAddr: "10.0.0.1:7000", APIAddr: "10.0.0.1:8091"}
	m2 := cluster.Member{ID: "cp-2", RaftAddr: "10.0.0.2:7000", APIAddr: "10.0.0.2:8091"}
	mustApply(t, s, cmd{typ: CmdSetMember, payload: SetMember{Member: m2}})
	if got := mustApply(t, s, cmd{typ: CmdSetMember, payload: SetMember{Member: m1}}); got != m1 {
		t.Fatalf("set member result: got %+v", got)
	}
	moved := m1
	moved.APIAddr = "10.0.0.9:8091"
	mustApply(t, s, cmd{typ: CmdSetMember, payload: SetMember{Member: moved}})

	got, err := s.Members()
	if err != nil || len(got) != 2 || got[0] != moved || got[1] != m2 {
		t.Fatalf("members: got %+v, %v", got, err)
	}
	if m, err := s.Member("cp-1"); err != nil || m.APIAddr != "10.0.0.9:8091" {
		t.Fatalf("member cp-1: got %+v, %v", m, err)
	}

	mustApply(t, s, cmd{typ: CmdRemoveMember, payload: RemoveMember{ID: "cp-2"}})
	if _, err := s.Member("cp-2"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("removed member: got %v, want ErrNotFound", err)
	}
	if _, err := applyNext(t, s, cmd{typ: CmdRemoveMember, payload: RemoveMember{ID: "cp-2"}}); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("remove twice: got %v, want ErrNotFound", err)
	}

	for name, bad := range map[string]cluster.Member{
		"no id":         {RaftAddr: "h:1"},
		"no raft addr":  {ID: "x"},
		"bad raft addr": {ID: "x", RaftAddr: "nohost"},
		"bad api addr":  {ID: "x", RaftAddr: "h:1", APIAddr: "nope"},
	} {
		if _, err := applyNext(t, s, cmd{typ: CmdSetMember, payload: SetMember{Member: bad}}); !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
}

func TestStore_DiskManager(t *testing.T) {
	s := openStore(t)
	free := uint64(10 << 20)
	d := s.NewDiskManager(DiskConfig{Dir: t.TempDir(), MinFreeBytes: 1 << 20, FreeBytes: func(string) (uint64, error) { return free, nil }})
	if d.LowDisk() || d.Check(context.Background()) != nil {
		t.Fatal("low disk reported with space free")
	}
	free = 1 << 10
	d.check()
	if !d.LowDisk() || d.Check(context.Background()) == nil {
		t.Fatal("low disk not reported")
	}
	free = 10 << 20
	d.check()
	if d.LowDisk() {
		t.Fatal("low disk not cleared when space returned")
	}
	s.runValueLogGC(0.5, s.logger) // runs on a real (empty) value log without error
}

func TestStore_ValueLogGCStats(t *testing.T) {
	s := openStore(t)
	if got := s.ValueLogGCStats(); got != (GCStats{}) {
		t.Fatalf("before any run: got %+v, want zero", got)
	}
	mustApply(t, s, createTenant("alpha"))
	s.runValueLogGC(0.5, s.logger)
	s.runValueLogGC(0.5, s.logger)
	got := s.ValueLogGCStats()
	if got.Runs != 2 || got.Total <= 0 {
		t.Fatalf("after two runs: got %+v, want 2 runs and a duration", got)
	}
}
