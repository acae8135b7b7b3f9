package store

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// batchScript is a sequence of commands whose outcomes depend on each
// other: duplicates, a retried request id, a request id reused by another
// type, and request records that expire (and are pruned) mid-sequence.
func batchScript() []cmd {
	late := t0.Add(RequestTTL + time.Hour)
	script := []cmd{
		withRID(createTenant("acme"), "r1"),
		createTenant("beta"),
		createTenant("acme"),                // duplicate: 409
		withRID(createTenant("acme"), "r1"), // retry: the first result
		withRID(deleteTenant("beta"), "r1"), // request id of another type
		withRID(deleteTenant("beta"), "r2"),
		createToken("tok", "hash-1"),
		{typ: CmdCreateTenant, rid: "r3", at: late, payload: createTenant("gamma").payload}, // prunes r1, r2
		withRID(createTenant("acme"), "r1"),                                                 // r1 expired: now a duplicate
	}
	for i := range 20 {
		script = append(script, withRID(createTenant(fmt.Sprintf("bulk-%02d", i)), fmt.Sprintf("b%d", i)))
	}
	return script
}

func withRID(c cmd, rid string) cmd { c.rid = rid; return c }

func TestApplyBatch_SameAsApplyingOneByOne(t *testing.T) {
	script := batchScript()
	one := openStore(t)
	var want []string
	for i, c := range script {
		v, err := one.Apply(uint64(i+1), c.bytes())
		want = append(want, fmt.Sprintf("%v | %v", v, err))
	}
	for _, size := range []int{2, 3, 7, len(script)} {
		t.Run(fmt.Sprintf("batches of %d", size), func(t *testing.T) {
			s := openStore(t)
			var got []string
			for start := 0; start < len(script); start += size {
				end := min(start+size, len(script))
				var indexes []uint64
				var data [][]byte
				for i := start; i < end; i++ {
					indexes, data = append(indexes, uint64(i+1)), append(data, script[i].bytes())
				}
				values, errs := make([]any, len(data)), make([]error, len(data))
				if !s.applyBatch(indexes, data, values, errs) {
					t.Fatalf("entries %d to %d were not applied as one batch", start+1, end)
				}
				for k := range values {
					got = append(got, fmt.Sprintf("%v | %v", values[k], errs[k]))
				}
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("entry %d (%s): got %s, want %s", i+1, script[i].typ, got[i], want[i])
				}
			}
			if s.AppliedIndex() != uint64(len(script)) {
				t.Errorf("applied index %d, want %d", s.AppliedIndex(), len(script))
			}
			if !bytes.Equal(persisted(t, s), persisted(t, one)) {
				t.Error("state differs from applying one by one")
			}
		})
	}
}

func TestApplyBatch_StopsAtAFatalEntry(t *testing.T) {
	s := openStore(t)
	data := [][]byte{createTenant("acme").bytes(), []byte(`{"type":"no_such_command","version":1}`), createTenant("beta").bytes()}
	_, errs := s.ApplyBatch([]uint64{1, 2, 3}, data)
	if errs[0] != nil {
		t.Fatalf("entry 1: %v", errs[0])
	}
	for i := 1; i < 3; i++ {
		if !s.IsFatal(errs[i]) {
			t.Errorf("entry %d: got %v, want a fatal error", i+1, errs[i])
		}
	}
	if got := s.AppliedIndex(); got != 1 {
		t.Errorf("applied index %d, want 1: nothing after the fatal entry may be applied", got)
	}
	if _, err := s.Tenant("beta"); err == nil {
		t.Error("beta was created after a fatal entry")
	}
}

func TestApplyBatch_ReplayedEntriesReturnRecordedResults(t *testing.T) {
	s := openStore(t)
	data := [][]byte{withRID(createTenant("acme"), "r1").bytes(), createTenant("beta").bytes()}
	first, _ := s.ApplyBatch([]uint64{1, 2}, data)
	again, errs := s.ApplyBatch([]uint64{1, 2}, data) // a restart replays the log
	if errs[0] != nil || fmt.Sprint(again[0]) != fmt.Sprint(first[0]) {
		t.Errorf("replayed entry 1: got %v, %v; want %v", again[0], errs[0], first[0])
	}
	if s.AppliedIndex() != 2 {
		t.Errorf("applied index %d, want 2", s.AppliedIndex())
	}
}
