package store

import (
	"bytes"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// User returns customer id with its password hash, or cluster.ErrNotFound.
func (s *Store) User(id string) (StoredUser, error) {
	var u StoredUser
	err := s.view(func(txn *badger.Txn) error {
		var found bool
		var err error
		u, found, err = getUser(txn, id)
		if err == nil && !found {
			return cluster.Errorf(cluster.ErrNotFound, "user %q not found", id)
		}
		return err
	})
	return u, err
}

// UserByEmail returns the customer with this (normalized) e-mail, or
// cluster.ErrNotFound.
func (s *Store) UserByEmail(email string) (StoredUser, error) {
	var u StoredUser
	err := s.view(func(txn *badger.Txn) error {
		var id string
		found, err := getJSON(txn, userEmailKey(email), &id)
		if err == nil && found {
			u, found, err = getUser(txn, id)
		}
		if err == nil && !found {
			return cluster.Errorf(cluster.ErrNotFound, "no user with this e-mail")
		}
		return err
	})
	return u, err
}

// Users returns the customers whose e-mail or id contains q (all for ""),
// sorted by id, at most limit of them.
func (s *Store) Users(q string, limit int) ([]cluster.User, error) {
	q = strings.ToLower(q)
	out := []cluster.User{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSONKeys(txn, prefixUser, func(_ []byte, u *StoredUser) bool {
			if q == "" || strings.Contains(u.Email, q) || strings.Contains(u.ID, q) {
				out = append(out, u.User)
			}
			return len(out) < limit
		})
	})
	return out, err
}

// TenantsOf returns the tenants (live and deleted) owned by user, by id.
func (s *Store) TenantsOf(user string) ([]cluster.Tenant, error) {
	out := []cluster.Tenant{}
	err := s.view(func(txn *badger.Txn) error {
		ids, err := ownedTenantIDs(txn, user)
		if err != nil {
			return err
		}
		for _, id := range ids {
			t, found, err := getTenant(txn, id)
			if err != nil {
				return err
			}
			if found {
				out = append(out, t)
			}
		}
		return nil
	})
	return out, err
}

// Session returns session id, or cluster.ErrNotFound.
func (s *Store) Session(id string) (StoredSession, error) {
	var ss StoredSession
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, sessionKey(id), &ss)
		if err == nil && !found {
			return cluster.Errorf(cluster.ErrNotFound, "session %q not found", id)
		}
		return err
	})
	return ss, err
}

// Sessions returns the sessions of user.
func (s *Store) Sessions(user string) ([]cluster.Session, error) {
	out := []cluster.Session{}
	err := s.view(func(txn *badger.Txn) error {
		prefix := userSessionPrefix(user)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var sids []string
		for it.Rewind(); it.Valid(); it.Next() {
			sids = append(sids, string(bytes.TrimPrefix(it.Item().Key(), prefix)))
		}
		it.Close()
		for _, sid := range sids {
			var ss StoredSession
			found, err := getJSON(txn, sessionKey(sid), &ss)
			if err != nil {
				return err
			}
			if found {
				out = append(out, ss.Session)
			}
		}
		return nil
	})
	return out, err
}

// SigningKeys returns the access-token key ring, oldest first.
func (s *Store) SigningKeys() ([]SigningKey, error) {
	var ring []SigningKey
	err := s.view(func(txn *badger.Txn) error {
		_, err := getJSON(txn, keySigningKeys, &ring)
		return err
	})
	return ring, err
}

// QuotaRequests returns quota requests, newest last: of user (all users
// for ""), in state (any for "").
func (s *Store) QuotaRequests(user, state string) ([]cluster.QuotaRequest, error) {
	out := []cluster.QuotaRequest{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSONKeys(txn, prefixQuotaRequest, func(_ []byte, r *cluster.QuotaRequest) bool {
			if (user == "" || r.UserID == user) && (state == "" || r.State == state) {
				out = append(out, *r)
			}
			return true
		})
	})
	slices.SortFunc(out, func(a, b cluster.QuotaRequest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// QuotaRequest returns request id, or cluster.ErrNotFound.
func (s *Store) QuotaRequest(id string) (cluster.QuotaRequest, error) {
	var r cluster.QuotaRequest
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, quotaReqKey(id), &r)
		if err == nil && !found {
			return cluster.Errorf(cluster.ErrNotFound, "quota request %q not found", id)
		}
		return err
	})
	return r, err
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	// UserID keeps entries about this customer ("" for all).
	UserID string
	// Action keeps entries of this action ("" for all).
	Action string
	// Before keeps entries with an id before this one (paging backwards).
	Before string
	// Limit bounds the result (newest first).
	Limit int
}

// Audit returns audit entries, newest first.
func (s *Store) Audit(f AuditFilter) ([]cluster.AuditEntry, error) {
	out := []cluster.AuditEntry{}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAudit, Reverse: true, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		seek := append(slices.Clip(prefixAudit), 0xff)
		if f.Before != "" {
			seek = append(slices.Clip(prefixAudit), strings.Replace(f.Before, "-", "/", 1)...)
		}
		for it.Seek(seek); it.Valid() && len(out) < f.Limit; it.Next() {
			if f.Before != "" && bytes.Equal(it.Item().Key(), seek) {
				continue
			}
			var e cluster.AuditEntry
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return err
			}
			if (f.UserID == "" || e.UserID == f.UserID) && (f.Action == "" || e.Action == f.Action) {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}
