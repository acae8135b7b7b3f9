package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

func ptr[T any](v T) *T { return &v }

func TestStore_Apply(t *testing.T) {
	purgeAt := t0.Add(7 * 24 * time.Hour)
	later := t0.Add(time.Hour)
	tests := []struct {
		name  string
		setup []cmd
		cmd   cmd
		// want is the error's code; nil means success.
		want *cluster.Error
		// msg must appear in the error's message.
		msg string
		// check inspects a successful result and the store.
		check func(t *testing.T, res any, s *Store)
	}{
		{
			name: "create tenant",
			cmd:  cmd{typ: CmdCreateTenant, at: later, payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: "Acme", Node: "n1", Epoch: 3, State: cluster.TenantDeleted, Version: 99}}},
			check: func(t *testing.T, res any, s *Store) {
				want := cluster.Tenant{ID: "acme", Name: "Acme", Node: "n1", Epoch: 3, State: cluster.TenantActive,
					Durability: cluster.DurabilityAsync, CreatedAt: later, UpdatedAt: later, Version: 1}
				wantTenant(t, res, want)
				stored, _ := s.Tenant("acme")
				wantTenant(t, stored, want)
			},
		},
		{name: "create tenant with sync durability", cmd: cmd{typ: CmdCreateTenant, payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Durability: cluster.DurabilitySync}}},
			check: func(t *testing.T, res any, s *Store) {
				if d := res.(cluster.Tenant).Durability; d != cluster.DurabilitySync {
					t.Errorf("Durability: got %q, want sync", d)
				}
			}},
		{name: "create tenant invalid id", cmd: createTenant("Bad_ID"), want: cluster.ErrInvalidTenantID},
		{name: "create tenant reserved id", cmd: createTenant("admin"), want: cluster.ErrReservedTenantID},
		{name: "create tenant unknown durability", cmd: cmd{typ: CmdCreateTenant, payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Durability: "eventually"}}},
			want: cluster.ErrInvalidInput, msg: "durability"},
		{name: "create tenant name too long", cmd: cmd{typ: CmdCreateTenant, payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: strings.Repeat("x", MaxNameLen+1)}}},
			want: cluster.ErrInvalidInput},
		{name: "create live duplicate", setup: []cmd{createTenant("acme")}, cmd: createTenant("acme"),
			want: cluster.ErrTenantExists, msg: `tenant "acme" already exists`},
		{name: "create deleted duplicate", setup: []cmd{createTenant("acme"), deleteTenant("acme")}, cmd: createTenant("acme"),
			want: cluster.ErrTenantExists, msg: "was deleted and its id is held until " + purgeAt.Format(time.RFC3339)},

		{name: "delete tenant", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdDeleteTenant, at: later, payload: DeleteTenant{ID: "acme", PurgeAfter: purgeAt}},
			check: func(t *testing.T, res any, s *Store) {
				got := res.(cluster.Tenant)
				if got.State != cluster.TenantDeleted || got.DeletedAt == nil || !got.DeletedAt.Equal(later) ||
					got.PurgeAfter == nil || !got.PurgeAfter.Equal(purgeAt) || got.Version != 2 || !got.UpdatedAt.Equal(later) {
					t.Errorf("deleted tenant: got %+v", got)
				}
			}},
		{name: "delete unknown", cmd: deleteTenant("acme"), want: cluster.ErrTenantNotFound},
		{name: "delete already deleted", setup: []cmd{createTenant("acme"), deleteTenant("acme")}, cmd: deleteTenant("acme"), want: cluster.ErrTenantNotFound, msg: "deleted"},
		{name: "delete without purge_after", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdDeleteTenant, payload: DeleteTenant{ID: "acme"}},
			want: cluster.ErrInvalidInput, msg: "purge_after"},

		{name: "restore tenant", setup: []cmd{createTenant("acme"), deleteTenant("acme")}, cmd: cmd{typ: CmdRestoreTenant, at: later, payload: RestoreTenant{ID: "acme"}},
			check: func(t *testing.T, res any, s *Store) {
				got := res.(cluster.Tenant)
				if got.State != cluster.TenantActive || got.DeletedAt != nil || got.PurgeAfter != nil || got.Version != 3 || !got.CreatedAt.Equal(t0) {
					t.Errorf("restored tenant: got %+v", got)
				}
			}},
		{name: "restore live", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdRestoreTenant, payload: RestoreTenant{ID: "acme"}}, want: cluster.ErrTenantNotDeleted},
		{name: "restore unknown", cmd: cmd{typ: CmdRestoreTenant, payload: RestoreTenant{ID: "acme"}}, want: cluster.ErrTenantNotFound},

		{name: "purge tenant", setup: []cmd{createTenant("acme"), deleteTenant("acme")}, cmd: cmd{typ: CmdPurgeTenant, payload: PurgeTenant{ID: "acme"}},
			check: func(t *testing.T, res any, s *Store) {
				if got := res.(cluster.Tenant); got.ID != "acme" || got.State != cluster.TenantDeleted {
					t.Errorf("purge result: got %+v, want the deleted record", got)
				}
				if _, err := s.Tenant("acme"); !errors.Is(err, cluster.ErrTenantNotFound) {
					t.Errorf("Tenant after purge: got %v, want ErrTenantNotFound", err)
				}
			}},
		{name: "purge live", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdPurgeTenant, payload: PurgeTenant{ID: "acme"}}, want: cluster.ErrTenantNotDeleted},
		{name: "purge unknown", cmd: cmd{typ: CmdPurgeTenant, payload: PurgeTenant{ID: "acme"}}, want: cluster.ErrTenantNotFound},

		{name: "update tenant", setup: []cmd{createTenant("acme")},
			cmd: cmd{typ: CmdUpdateTenant, at: later, payload: UpdateTenant{ID: "acme", ExpectedVersion: 1, Name: ptr("New"), Node: ptr("n2"),
				Epoch: ptr[uint64](4), RestoreEpoch: ptr[uint64](3), Durability: ptr(cluster.DurabilitySync)}},
			check: func(t *testing.T, res any, s *Store) {
				want := cluster.Tenant{ID: "acme", Name: "New", Node: "n2", Epoch: 4, RestoreEpoch: 3, State: cluster.TenantActive,
					Durability: cluster.DurabilitySync, CreatedAt: t0, UpdatedAt: later, Version: 2}
				wantTenant(t, res, want)
			}},
		{name: "update one field", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Node: ptr("n9")}},
			check: func(t *testing.T, res any, s *Store) {
				if got := res.(cluster.Tenant); got.Node != "n9" || got.Name != "Tenant acme" || got.Epoch != 0 {
					t.Errorf("updated tenant: got %+v", got)
				}
			}},
		{name: "update stale version", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", ExpectedVersion: 7, Name: ptr("x")}},
			want: cluster.ErrStaleVersion, msg: "version 1"},
		{name: "update equal epoch", setup: []cmd{createTenant("acme"), {typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Epoch: ptr[uint64](5)}}},
			cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Epoch: ptr[uint64](5)}}, want: cluster.ErrStaleVersion, msg: "epoch 5"},
		{name: "update lower epoch", setup: []cmd{createTenant("acme"), {typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Epoch: ptr[uint64](5)}}},
			cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Epoch: ptr[uint64](4)}}, want: cluster.ErrStaleVersion},
		{name: "update no field", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme"}}, want: cluster.ErrInvalidInput},
		{name: "update unknown durability", setup: []cmd{createTenant("acme")}, cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Durability: ptr(cluster.Durability("x"))}},
			want: cluster.ErrInvalidInput},
		{name: "update deleted", setup: []cmd{createTenant("acme"), deleteTenant("acme")}, cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Name: ptr("x")}},
			want: cluster.ErrTenantNotFound},
		{name: "update unknown", cmd: cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "acme", Name: ptr("x")}}, want: cluster.ErrTenantNotFound},

		{name: "create token", cmd: cmd{typ: CmdCreateToken, at: later, payload: CreateToken{Token: cluster.Token{ID: "tok1", Name: "ci", Hash: "h1", CreatedAt: t0.Add(-time.Hour)}}},
			check: func(t *testing.T, res any, s *Store) {
				want := cluster.Token{ID: "tok1", Name: "ci", CreatedAt: later}
				if got := res.(cluster.Token); !reflect.DeepEqual(got, want) {
					t.Errorf("result: got %+v, want %+v", got, want)
				}
				want.Hash = "h1"
				if got, err := s.TokenByHash("h1"); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("TokenByHash: got %+v, %v; want %+v", got, err, want)
				}
			}},
		{name: "create token duplicate id", setup: []cmd{createToken("tok1", "h1")}, cmd: createToken("tok1", "h2"), want: cluster.ErrInvalidInput, msg: `token id "tok1" already exists`},
		{name: "create token duplicate hash", setup: []cmd{createToken("tok1", "h1")}, cmd: createToken("tok2", "h1"), want: cluster.ErrInvalidInput, msg: "same secret"},
		{name: "create token without hash", cmd: createToken("tok1", ""), want: cluster.ErrInvalidInput, msg: "hash"},
		{name: "create token without id", cmd: createToken("", "h1"), want: cluster.ErrInvalidInput, msg: "id"},

		{name: "revoke token", setup: []cmd{createToken("tok1", "h1")}, cmd: cmd{typ: CmdRevokeToken, payload: RevokeToken{ID: "tok1"}},
			check: func(t *testing.T, res any, s *Store) {
				if got := res.(cluster.Token); got.ID != "tok1" {
					t.Errorf("result: got %+v, want tok1", got)
				}
				if _, err := s.TokenByHash("h1"); !errors.Is(err, cluster.ErrTokenNotFound) {
					t.Errorf("TokenByHash after revoke: got %v, want ErrTokenNotFound", err)
				}
				if toks, _ := s.Tokens(); len(toks) != 0 {
					t.Errorf("Tokens after revoke: got %v, want none", toks)
				}
			}},
		{name: "revoke unknown token", cmd: cmd{typ: CmdRevokeToken, payload: RevokeToken{ID: "tok1"}}, want: cluster.ErrTokenNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			for _, c := range tc.setup {
				mustApply(t, s, c)
			}
			before := persistedRecords(t, s)
			index := s.AppliedIndex() + 1
			res, err := applyNext(t, s, tc.cmd)
			if got := s.AppliedIndex(); got != index {
				t.Errorf("AppliedIndex: got %d, want %d", got, index)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Apply: got error %v, want success", err)
				}
				tc.check(t, res, s)
				return
			}
			checkCommandError(t, res, err, tc.want, tc.msg)
			if after := persistedRecords(t, s); !bytes.Equal(before, after) {
				t.Errorf("a rejected command changed the state")
			}
		})
	}
}

// checkCommandError checks that Apply returned the command error want (a
// *cluster.Error whose message contains msg) and no result.
func checkCommandError(t *testing.T, res any, err error, want *cluster.Error, msg string) {
	t.Helper()
	var cerr *cluster.Error
	if !errors.As(err, &cerr) || !errors.Is(err, want) {
		t.Fatalf("Apply: got %v (%T), want *cluster.Error %s", err, err, want.Code)
	}
	if !strings.Contains(cerr.Message, msg) {
		t.Errorf("message: got %q, want it to contain %q", cerr.Message, msg)
	}
	if res != nil {
		t.Errorf("result: got %+v, want nil", res)
	}
}

// persistedRecords returns the snapshot stream without its header (which
// holds the applied index).
func persistedRecords(t *testing.T, s *Store) []byte {
	t.Helper()
	return persisted(t, s)[len(snapshotMagic)+8:]
}

func wantTenant(t *testing.T, res any, want cluster.Tenant) {
	t.Helper()
	got, ok := res.(cluster.Tenant)
	if !ok {
		t.Fatalf("result: got %T, want cluster.Tenant", res)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tenant:\n got %+v\nwant %+v", got, want)
	}
}

func TestStore_ApplyFatal(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
	}{
		{"not json", "{"},
		{"unknown type", `{"type":"drop_all","v":1,"time":"2025-01-01T00:00:00Z","data":{}}`},
		{"unknown version", `{"type":"create_tenant","v":2,"time":"2025-01-01T00:00:00Z","data":{"tenant":{"id":"acme"}}}`},
		{"payload of wrong shape", `{"type":"create_tenant","v":1,"time":"2025-01-01T00:00:00Z","data":"acme"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			mustApply(t, s, createTenant("keep"))
			before := persisted(t, s)
			res, err := s.Apply(2, []byte(tc.data))
			if !errors.Is(err, ErrUnknownCommand) || !s.IsFatal(err) {
				t.Fatalf("Apply: got %v, want a fatal error wrapping ErrUnknownCommand", err)
			}
			if res != nil {
				t.Errorf("result: got %v, want nil", res)
			}
			if s.AppliedIndex() != 1 || !bytes.Equal(before, persisted(t, s)) {
				t.Errorf("a fatal command changed the state (applied index %d)", s.AppliedIndex())
			}
		})
	}
	t.Run("command without time is a command error", func(t *testing.T) {
		s := openStore(t)
		_, err := s.Apply(1, NewCommand(CmdCreateTenant, "", time.Time{}, CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}))
		checkCommandError(t, nil, err, cluster.ErrInvalidInput, "no time")
		if s.AppliedIndex() != 1 {
			t.Errorf("AppliedIndex: got %d, want 1", s.AppliedIndex())
		}
	})
	t.Run("command errors are not fatal", func(t *testing.T) {
		s := openStore(t)
		if s.IsFatal(cluster.Errorf(cluster.ErrTenantExists, "x")) || s.IsFatal(nil) {
			t.Error("IsFatal: got true for a command error or nil")
		}
		if !s.IsFatal(fmt.Errorf("badger: %w", errors.New("disk full"))) {
			t.Error("IsFatal: got false for a storage error")
		}
	})
}

func TestStore_ApplySkipsApplied(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createTenant("acme"))                                                                                     // 1
	res1 := mustApply(t, s, cmd{typ: CmdCreateTenant, rid: "r-2", payload: CreateTenant{Tenant: cluster.Tenant{ID: "beta"}}}) // 2
	mustApply(t, s, deleteTenant("acme"))                                                                                     // 3
	want := persisted(t, s)

	for _, tc := range []struct {
		name    string
		index   uint64
		data    []byte
		wantRes any
	}{
		{"same index again", 3, deleteTenant("acme").bytes(), nil},
		{"older index", 1, createTenant("acme").bytes(), nil},
		{"older index, new command", 2, createTenant("gamma").bytes(), nil},
		{"older index with recorded request id", 2, cmd{typ: CmdCreateTenant, rid: "r-2", payload: CreateTenant{Tenant: cluster.Tenant{ID: "beta"}}}.bytes(), res1},
		{"older index, undecodable", 1, []byte("{"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Apply(tc.index, tc.data)
			if err != nil {
				t.Fatalf("Apply: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(res, tc.wantRes) {
				t.Errorf("result: got %+v, want %+v", res, tc.wantRes)
			}
			if got := persisted(t, s); !bytes.Equal(got, want) || s.AppliedIndex() != 3 {
				t.Errorf("a skipped entry changed the state (applied index %d)", s.AppliedIndex())
			}
		})
	}
	t.Run("next index applies", func(t *testing.T) {
		if _, err := s.Apply(4, createTenant("gamma").bytes()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Tenant("gamma"); err != nil {
			t.Errorf("Tenant(gamma): %v", err)
		}
	})
}

func TestStore_ApplyRequestID(t *testing.T) {
	t.Run("retry returns the recorded result and changes nothing", func(t *testing.T) {
		s := openStore(t)
		first := mustApply(t, s, cmd{typ: CmdCreateTenant, rid: "req-1", payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: "first"}}})
		before := persistedRecords(t, s)
		// A retry carries the same request id; its payload and time are
		// ignored.
		again, err := applyNext(t, s, cmd{typ: CmdCreateTenant, rid: "req-1", at: t0.Add(time.Minute), payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme", Name: "second"}}})
		if err != nil {
			t.Fatalf("retry: got error %v, want the first result", err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Errorf("retry result: got %+v, want %+v", again, first)
		}
		if !bytes.Equal(before, persistedRecords(t, s)) {
			t.Error("retry changed the state")
		}
		if s.AppliedIndex() != 2 {
			t.Errorf("AppliedIndex: got %d, want 2", s.AppliedIndex())
		}
	})
	t.Run("recorded error is returned again", func(t *testing.T) {
		s := openStore(t)
		_, err1 := applyNext(t, s, cmd{typ: CmdDeleteTenant, rid: "req-del", payload: DeleteTenant{ID: "acme", PurgeAfter: t0}})
		mustApply(t, s, createTenant("acme"))
		_, err2 := applyNext(t, s, cmd{typ: CmdDeleteTenant, rid: "req-del", payload: DeleteTenant{ID: "acme", PurgeAfter: t0}})
		if !errors.Is(err1, cluster.ErrTenantNotFound) || !reflect.DeepEqual(err1, err2) {
			t.Errorf("errors: got %v then %v, want the same ErrTenantNotFound twice", err1, err2)
		}
		if tn, _ := s.Tenant("acme"); tn.State != cluster.TenantActive {
			t.Errorf("tenant state: got %q, want active (the retry must not delete)", tn.State)
		}
	})
	t.Run("request id reused by another command type", func(t *testing.T) {
		s := openStore(t)
		mustApply(t, s, cmd{typ: CmdCreateTenant, rid: "req-1", payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}})
		_, err := applyNext(t, s, cmd{typ: CmdPurgeTenant, rid: "req-1", payload: PurgeTenant{ID: "acme"}})
		checkCommandError(t, nil, err, cluster.ErrInvalidInput, "already used for a create_tenant command")
	})
	t.Run("records expire after RequestTTL", func(t *testing.T) {
		s := openStore(t)
		mustApply(t, s, cmd{typ: CmdCreateTenant, rid: "req-1", payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}})
		mustApply(t, s, cmd{typ: CmdCreateTenant, at: t0.Add(RequestTTL + time.Second), payload: CreateTenant{Tenant: cluster.Tenant{ID: "beta"}}})
		_, err := applyNext(t, s, cmd{typ: CmdCreateTenant, rid: "req-1", at: t0.Add(RequestTTL + 2*time.Second), payload: CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}})
		if !errors.Is(err, cluster.ErrTenantExists) {
			t.Errorf("retry after expiry: got %v, want ErrTenantExists (applied as a new command)", err)
		}
	})
	t.Run("pruning is bounded per apply", func(t *testing.T) {
		s := openStore(t)
		const n = pruneBatch*2 + 3
		for i := range n {
			_, _ = applyNext(t, s, cmd{typ: CmdRevokeToken, rid: fmt.Sprintf("req-%02d", i), at: t0.Add(time.Duration(i) * time.Second), payload: RevokeToken{ID: "none"}})
		}
		late := t0.Add(RequestTTL + time.Hour)
		for _, want := range []int{n - pruneBatch, n - 2*pruneBatch, 0} {
			_, _ = applyNext(t, s, cmd{typ: CmdRevokeToken, at: late, payload: RevokeToken{ID: "none"}})
			if got := countKeys(t, s, prefixRequest); got != want {
				t.Errorf("request records: got %d, want %d", got, want)
			}
			if got := countKeys(t, s, prefixRequestTime); got != want {
				t.Errorf("request time index: got %d, want %d", got, want)
			}
		}
	})
}

// TestStore_Deterministic applies one log, successes, command errors,
// retries and request-id expiry included, to two fresh stores and expects
// byte-identical state.
func TestStore_Deterministic(t *testing.T) {
	var log [][]byte
	add := func(c cmd) { log = append(log, c.bytes()) }
	for i := range 30 {
		at := t0.Add(time.Duration(i) * 3 * time.Hour)
		id := fmt.Sprintf("tenant-%02d", i%7)
		rid := fmt.Sprintf("req-%d", i%5)
		add(cmd{typ: CmdCreateTenant, rid: rid, at: at, payload: CreateTenant{Tenant: cluster.Tenant{ID: id, Name: fmt.Sprint(i)}}})
		add(cmd{typ: CmdUpdateTenant, at: at, payload: UpdateTenant{ID: id, Epoch: ptr(uint64(i))}})
		add(cmd{typ: CmdCreateToken, at: at, payload: CreateToken{Token: cluster.Token{ID: fmt.Sprintf("tok-%d", i%4), Hash: fmt.Sprintf("hash-%d", i)}}})
		if i%3 == 0 {
			add(cmd{typ: CmdDeleteTenant, at: at, payload: DeleteTenant{ID: id, PurgeAfter: at.Add(time.Hour)}})
			add(cmd{typ: CmdRevokeToken, at: at, payload: RevokeToken{ID: fmt.Sprintf("tok-%d", i%4)}})
		}
		if i%4 == 0 {
			add(cmd{typ: CmdPurgeTenant, at: at, payload: PurgeTenant{ID: id}})
			add(cmd{typ: CmdRestoreTenant, at: at, payload: RestoreTenant{ID: id}})
		}
	}
	a, b := openStore(t), openStore(t)
	for i, entry := range log {
		ra, ea := a.Apply(uint64(i+1), entry)
		rb, eb := b.Apply(uint64(i+1), entry)
		if !reflect.DeepEqual(ra, rb) || !reflect.DeepEqual(ea, eb) {
			t.Fatalf("entry %d: results differ: (%+v, %v) vs (%+v, %v)", i+1, ra, ea, rb, eb)
		}
	}
	if sa, sb := stateJSON(t, a), stateJSON(t, b); !bytes.Equal(sa, sb) {
		t.Errorf("Tenants/Tokens differ:\n%s\n%s", sa, sb)
	}
	if pa, pb := persisted(t, a), persisted(t, b); !bytes.Equal(pa, pb) {
		t.Error("full snapshots differ")
	}
}

// TestOutcomeEncode checks the outcome's own encoder writes what
// json.Marshal writes.
func TestOutcomeEncode(t *testing.T) {
	at := time.Date(2026, 11, 29, 3, 4, 5, 123456789, time.UTC)
	for _, o := range []outcome{
		{Type: CmdCreateTenant, Time: at, Value: json.RawMessage(`{"id":"acme","name":"A \"quoted\" \u003c name"}`)},
		{Type: CmdDeleteTenant, Time: at, Err: cluster.Errorf(cluster.ErrNotFound, "tenant %q not found", "x<y")},
		{Type: CmdCreateToken, Time: at},
	} {
		got, err := o.encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("encode:\n got %s\nwant %s", got, want)
		}
	}
}
