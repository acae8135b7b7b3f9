package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

// t0 is the time of the first command in tests.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// cmd is one command to apply in a test.
type cmd struct {
	typ     string
	rid     string
	at      time.Time
	payload any
}

func (c cmd) bytes() []byte {
	at := c.at
	if at.IsZero() {
		at = t0
	}
	return NewCommand(c.typ, c.rid, at, c.payload)
}

// applyNext applies c at the index after the store's applied index.
func applyNext(t *testing.T, s *Store, c cmd) (any, error) {
	t.Helper()
	res, err := s.Apply(s.AppliedIndex()+1, c.bytes())
	if err != nil && s.IsFatal(err) {
		t.Fatalf("Apply(%s): fatal error %v", c.typ, err)
	}
	return res, err
}

// mustApply applies c and fails the test on any error.
func mustApply(t *testing.T, s *Store, c cmd) any {
	t.Helper()
	res, err := applyNext(t, s, c)
	if err != nil {
		t.Fatalf("Apply(%s): %v", c.typ, err)
	}
	return res
}

func createTenant(id string) cmd {
	return cmd{typ: CmdCreateTenant, payload: CreateTenant{Tenant: cluster.Tenant{ID: id, Name: "Tenant " + id}}}
}

func deleteTenant(id string) cmd {
	return cmd{typ: CmdDeleteTenant, payload: DeleteTenant{ID: id, PurgeAfter: t0.Add(7 * 24 * time.Hour)}}
}

func createToken(id, hash string) cmd {
	return cmd{typ: CmdCreateToken, payload: CreateToken{Token: cluster.Token{ID: id, Name: "token " + id, Hash: hash}}}
}

// stateJSON returns the store's tenants and tokens (hashes included) as
// JSON, for comparing states byte for byte.
func stateJSON(t *testing.T, s *Store) []byte {
	t.Helper()
	tenants, err := s.Tenants(TenantFilter{})
	if err != nil {
		t.Fatalf("Tenants: %v", err)
	}
	tokens, err := s.Tokens()
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	stored := make([]storedToken, len(tokens))
	for i, tok := range tokens {
		stored[i] = newStoredToken(tok)
	}
	b, err := json.Marshal(struct {
		Tenants []cluster.Tenant
		Tokens  []storedToken
	}{tenants, stored})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// persisted returns the store's full snapshot stream.
func persisted(t *testing.T, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return buf.Bytes()
}

// countKeys returns how many keys start with prefix.
func countKeys(t *testing.T, s *Store, prefix []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStore_Open(t *testing.T) {
	t.Run("reopen keeps state and applied index", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, s, createTenant("acme"))
		mustApply(t, s, createToken("tok1", "hash1"))
		want := stateJSON(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: got %v, want nil", err)
		}
		s, err = Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.AppliedIndex(); got != 2 {
			t.Errorf("AppliedIndex: got %d, want 2", got)
		}
		if got := stateJSON(t, s); !bytes.Equal(got, want) {
			t.Errorf("state after reopen:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("closed store refuses calls", func(t *testing.T) {
		s, err := Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		if _, err := s.Tenant("acme"); !errors.Is(err, ErrClosed) {
			t.Errorf("Tenant: got %v, want ErrClosed", err)
		}
		if _, err := s.Apply(1, createTenant("acme").bytes()); !errors.Is(err, ErrClosed) || !s.IsFatal(err) {
			t.Errorf("Apply: got %v, want fatal ErrClosed", err)
		}
		if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
			t.Errorf("Snapshot: got %v, want ErrClosed", err)
		}
	})
}

func TestStore_Reads(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createTenant("zeta"))
	mustApply(t, s, createTenant("alpha"))
	mustApply(t, s, createTenant("mid"))
	mustApply(t, s, deleteTenant("mid"))
	mustApply(t, s, cmd{typ: CmdCreateToken, at: t0.Add(2 * time.Second), payload: CreateToken{Token: cluster.Token{ID: "aaa", Hash: "h-aaa"}}})
	mustApply(t, s, cmd{typ: CmdCreateToken, at: t0.Add(time.Second), payload: CreateToken{Token: cluster.Token{ID: "ccc", Hash: "h-ccc"}}})
	mustApply(t, s, cmd{typ: CmdCreateToken, at: t0.Add(time.Second), payload: CreateToken{Token: cluster.Token{ID: "bbb", Hash: "h-bbb"}}})

	t.Run("Tenants filters and sorts by id", func(t *testing.T) {
		for _, tc := range []struct {
			state cluster.TenantState
			want  []string
		}{
			{"", []string{"alpha", "mid", "zeta"}},
			{cluster.TenantActive, []string{"alpha", "zeta"}},
			{cluster.TenantDeleted, []string{"mid"}},
		} {
			got, err := s.Tenants(TenantFilter{State: tc.state})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, tn := range got {
				ids = append(ids, tn.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("Tenants(%q): got %v, want %v", tc.state, ids, tc.want)
			}
		}
		if _, err := s.Tenants(TenantFilter{State: "bogus"}); !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("Tenants(bogus): got %v, want ErrInvalidInput", err)
		}
	})
	t.Run("Tenant", func(t *testing.T) {
		got, err := s.Tenant("alpha")
		if err != nil || got.ID != "alpha" || got.Name != "Tenant alpha" {
			t.Errorf("Tenant(alpha): got %+v, %v", got, err)
		}
		if _, err := s.Tenant("nope"); !errors.Is(err, cluster.ErrTenantNotFound) {
			t.Errorf("Tenant(nope): got %v, want ErrTenantNotFound", err)
		}
	})
	t.Run("Tokens sorts by CreatedAt then ID, with hashes", func(t *testing.T) {
		got, err := s.Tokens()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, tok := range got {
			ids = append(ids, tok.ID+":"+tok.Hash)
		}
		want := []string{"bbb:h-bbb", "ccc:h-ccc", "aaa:h-aaa"}
		if !slices.Equal(ids, want) {
			t.Errorf("Tokens: got %v, want %v", ids, want)
		}
	})
	t.Run("TokenByHash", func(t *testing.T) {
		got, err := s.TokenByHash("h-ccc")
		if err != nil || got.ID != "ccc" || got.Hash != "h-ccc" || !got.CreatedAt.Equal(t0.Add(time.Second)) {
			t.Errorf("TokenByHash(h-ccc): got %+v, %v", got, err)
		}
		if _, err := s.TokenByHash("h-none"); !errors.Is(err, cluster.ErrTokenNotFound) {
			t.Errorf("TokenByHash(h-none): got %v, want ErrTokenNotFound", err)
		}
	})
}

func TestCommand_Encode(t *testing.T) {
	t.Run("mismatched payload", func(t *testing.T) {
		_, err := EncodeCommand(CmdDeleteTenant, "", t0, CreateTenant{})
		if !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("got %v, want ErrInvalidInput", err)
		}
	})
	t.Run("pointer payload", func(t *testing.T) {
		if _, err := EncodeCommand(CmdRevokeToken, "", t0, &RevokeToken{ID: "x"}); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		if _, err := EncodeCommand("drop_everything", "", t0, RevokeToken{}); !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("got %v, want ErrInvalidInput", err)
		}
	})
	t.Run("undecodable time is refused before proposing", func(t *testing.T) {
		p := DeleteTenant{ID: "acme", PurgeAfter: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
		b, err := EncodeCommand(CmdDeleteTenant, "", t0, p)
		if err == nil {
			err = openStore(t).CheckCommand(b)
		}
		if !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("got %v, want ErrInvalidInput", err)
		}
	})
	t.Run("NewCommand panics on mismatch", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("NewCommand did not panic")
			}
		}()
		NewCommand(CmdCreateTenant, "", t0, RevokeToken{})
	})
	t.Run("token hash survives encoding", func(t *testing.T) {
		b := createToken("tok", "secret-hash").bytes()
		c, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := decodePayload[CreateToken](&c)
		if err != nil || p.Token.Hash != "secret-hash" {
			t.Errorf("decoded token: got %+v, %v; want hash secret-hash", p.Token, err)
		}
	})
}

func TestStore_CheckCommand(t *testing.T) {
	s := openStore(t)
	for _, tc := range []struct {
		name string
		data string
		ok   bool
	}{
		{"valid", string(createTenant("acme").bytes()), true},
		{"not json", "{", false},
		{"unknown type", `{"type":"nope","v":1,"time":"2025-01-01T00:00:00Z","data":{}}`, false},
		{"future version", `{"type":"purge_tenant","v":2,"time":"2025-01-01T00:00:00Z","data":{"id":"a"}}`, false},
		{"unknown payload field", `{"type":"purge_tenant","v":1,"time":"2025-01-01T00:00:00Z","data":{"tenant":{}}}`, false},
		{"payload of wrong shape", `{"type":"purge_tenant","v":1,"time":"2025-01-01T00:00:00Z","data":[1]}`, false},
		{"unknown nested field", `{"type":"create_tenant","v":1,"time":"2025-01-01T00:00:00Z","data":{"tenant":{"id":"a","colour":"red"}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CheckCommand([]byte(tc.data))
			if tc.ok && err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, cluster.ErrInvalidInput) {
				t.Errorf("got %v, want ErrInvalidInput", err)
			}
		})
	}
}
