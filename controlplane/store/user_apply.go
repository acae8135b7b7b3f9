package store

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/encoding/json"

	"github.com/pbe/pbe/cluster"
)

// Customer accounts, their sessions, SSO tickets, quota requests, the audit
// log and the token-signing keys. Every record here is cluster state: a
// change is a Raft command, applied deterministically from its payload and
// the command's time.

// Key prefixes of customer records.
var (
	prefixUser         = []byte("u/")
	prefixUserEmail    = []byte("e/")
	prefixOwner        = []byte("o/") // o/{user}/{tenant}
	prefixSession      = []byte("s/")
	prefixUserSession  = []byte("S/") // S/{user}/{session}
	prefixTicket       = []byte("x/")
	prefixQuotaRequest = []byte("Q/")
	prefixPending      = []byte("P/") // P/{user}/{kind} -> request id
	prefixAudit        = []byte("a/") // a/{20-digit index}/{n}
	keySigningKeys     = []byte("m/signing-keys")
)

func userKey(id string) []byte       { return append(slices.Clip(prefixUser), id...) }
func userEmailKey(e string) []byte   { return append(slices.Clip(prefixUserEmail), e...) }
func sessionKey(id string) []byte    { return append(slices.Clip(prefixSession), id...) }
func ticketKey(hash string) []byte   { return append(slices.Clip(prefixTicket), hash...) }
func quotaReqKey(id string) []byte   { return append(slices.Clip(prefixQuotaRequest), id...) }
func ownerPrefix(user string) []byte { return append(slices.Clip(prefixOwner), user+"/"...) }
func ownerKey(user, tenant string) []byte {
	return append(ownerPrefix(user), tenant...)
}
func userSessionPrefix(user string) []byte {
	return append(slices.Clip(prefixUserSession), user+"/"...)
}
func userSessionKey(user, sid string) []byte {
	return append(userSessionPrefix(user), sid...)
}
func pendingKey(user, kind string) []byte {
	return append(slices.Clip(prefixPending), user+"/"+kind...)
}

// envelopeAudit numbers the audit entries a command carries in its
// envelope, apart from an append_audit command's own.
const envelopeAudit = 5000

func auditKey(index uint64, n int) []byte {
	return fmt.Appendf(slices.Clip(prefixAudit), "%020d/%04d", index, n)
}

// StoredUser is a customer as persisted, with the password hash.
type StoredUser struct {
	cluster.User
	PasswordHash string `json:"password_hash"`
}

// StoredSession is a session as persisted: the hash of its current refresh
// secret (empty for impersonation sessions, which cannot be refreshed).
type StoredSession struct {
	cluster.Session
	RefreshHash string `json:"refresh_hash,omitempty"`
}

// Ticket is a one-time SSO ticket into a tenant's admin UI.
type Ticket struct {
	Hash      string    `json:"hash"`
	Tenant    string    `json:"tenant"`
	UserID    string    `json:"user_id"`
	Actor     string    `json:"actor"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SigningKey is a key of the access-token key ring.
type SigningKey struct {
	ID     string `json:"id"`
	Secret []byte `json:"secret"`
}

// Command payloads of customer records.
type (
	// CreateUser adds a customer; the e-mail must be free.
	CreateUser struct {
		User StoredUser `json:"user"`
	}
	// UpdateUser changes the given fields. A new password hash sets
	// PasswordChangedAt and ends every session but KeepSession. A changed
	// quota or suspension is applied to the user's tenants too.
	UpdateUser struct {
		ID           string             `json:"id"`
		Verified     *bool              `json:"verified,omitempty"`
		Suspended    *bool              `json:"suspended,omitempty"`
		Quota        *cluster.UserQuota `json:"quota,omitempty"`
		PasswordHash *string            `json:"password_hash,omitempty"`
		KeepSession  string             `json:"keep_session,omitempty"`
	}
	// DeleteUser removes a customer who owns no tenant, and their sessions.
	DeleteUser struct {
		ID string `json:"id"`
	}
	// CreateSession records a login or an impersonation.
	CreateSession struct {
		Session StoredSession `json:"session"`
	}
	// RotateSession replaces a session's refresh secret, if the presented
	// one is current. A stale one (a refresh token used twice) ends the
	// session: someone else holds a copy.
	RotateSession struct {
		ID        string    `json:"id"`
		OldHash   string    `json:"old_hash"`
		NewHash   string    `json:"new_hash"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	// DeleteSession ends a session (logout, revoke).
	DeleteSession struct {
		ID string `json:"id"`
	}
	// PruneSessions deletes up to Limit sessions that expired before the
	// command's time (those of customers who never came back).
	PruneSessions struct {
		Limit int `json:"limit"`
	}
	// PrunedSessions is PruneSessions' result: how many it deleted, and
	// whether expired ones remain.
	PrunedSessions struct {
		Deleted int  `json:"deleted"`
		More    bool `json:"more"`
	}
	// CreateTicket stores a one-time SSO ticket.
	CreateTicket struct {
		Ticket Ticket `json:"ticket"`
	}
	// RedeemTicket uses up a ticket for Tenant; it fails for an unknown,
	// expired or used ticket, or one of another tenant.
	RedeemTicket struct {
		Hash   string `json:"hash"`
		Tenant string `json:"tenant"`
	}
	// CreateQuotaRequest records a customer's request; one pending per kind.
	CreateQuotaRequest struct {
		Request cluster.QuotaRequest `json:"request"`
	}
	// DecideQuotaRequest approves (the quota applies at once) or rejects a
	// pending request.
	DecideQuotaRequest struct {
		ID        string `json:"id"`
		Approve   bool   `json:"approve"`
		Reason    string `json:"reason,omitempty"`
		DecidedBy string `json:"decided_by"`
	}
	// AppendAudit adds audit entries; Apply sets their ids and times.
	AppendAudit struct {
		Entries []cluster.AuditEntry `json:"entries"`
	}
	// AddSigningKey adds a key to the ring when the ring has fewer than
	// IfFewerThan keys (so concurrent leaders create one key, not two).
	AddSigningKey struct {
		Key         SigningKey `json:"key"`
		IfFewerThan int        `json:"if_fewer_than"`
	}
)

func applyCreateUser(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateUser](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	u := p.User
	if u.ID == "" || u.Email == "" || u.PasswordHash == "" {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "create user: id, email and password hash are required"), nil
	}
	var owner string
	if found, err := getJSON(a.txn, userEmailKey(u.Email), &owner); err != nil || found {
		if found {
			return nil, cluster.Errorf(cluster.ErrUserExists, "an account with this e-mail exists"), nil
		}
		return nil, nil, err
	}
	var old StoredUser
	if found, err := getJSON(a.txn, userKey(u.ID), &old); err != nil || found {
		if found {
			return nil, cluster.Errorf(cluster.ErrUserExists, "user id %q is taken", u.ID), nil
		}
		return nil, nil, err
	}
	u.CreatedAt, u.UpdatedAt, u.PasswordChangedAt = a.now, a.now, a.now
	u.Version = a.index
	a.event(cluster.Event{Type: EventUserSignedUp, User: u.ID})
	if err := setJSON(a.txn, userKey(u.ID), u); err != nil {
		return nil, nil, err
	}
	return u.User, nil, setJSON(a.txn, userEmailKey(u.Email), u.ID)
}

func applyUpdateUser(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[UpdateUser](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	u, found, err := getUser(a.txn, p.ID)
	if err != nil || !found {
		return nil, userNotFound(found, p.ID), err
	}
	if p.Quota != nil && (p.Quota.MaxTenants < 0 || p.Quota.StorageBytes < 0 || p.Quota.RequestsPerDay < 0) {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "quotas must not be negative"), nil
	}
	if p.Verified != nil && *p.Verified && !u.Verified {
		u.Verified, u.VerifiedAt = true, &a.now
		a.event(cluster.Event{Type: EventUserVerified, User: u.ID})
	}
	if p.PasswordHash != nil {
		u.PasswordHash, u.PasswordChangedAt = *p.PasswordHash, a.now
		if err := endSessions(a.txn, u.ID, p.KeepSession); err != nil {
			return nil, nil, err
		}
	}
	tenantsChange := false
	if p.Suspended != nil && *p.Suspended != u.Suspended {
		u.Suspended, tenantsChange = *p.Suspended, true
		typ := EventUserUnsuspended
		if u.Suspended {
			typ = EventUserSuspended
		}
		a.event(cluster.Event{Type: typ, User: u.ID})
	}
	if p.Quota != nil && *p.Quota != u.Quota {
		u.Quota, tenantsChange = *p.Quota, true
	}
	u.UpdatedAt, u.Version = a.now, a.index
	if tenantsChange {
		if err := syncOwnedTenants(a, u.User); err != nil {
			return nil, nil, err
		}
	}
	return u.User, nil, setJSON(a.txn, userKey(u.ID), u)
}

// syncOwnedTenants copies the owner's suspension and per-tenant quota onto
// each of their tenants.
func syncOwnedTenants(a *applyCtx, u cluster.User) error {
	ids, err := ownedTenantIDs(a.txn, u.ID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		t, found, err := getTenant(a.txn, id)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if t.OwnerSuspended != u.Suspended {
			typ := EventTenantUnsuspended
			if u.Suspended {
				typ = EventTenantSuspended
			}
			a.event(cluster.Event{Type: typ, Tenant: t.ID, User: u.ID, Data: map[string]any{"by_owner": true}})
		}
		if q := u.Quota.TenantQuota(); q != t.Quota {
			a.event(cluster.Event{Type: EventTenantQuota, Tenant: t.ID, User: u.ID, Data: map[string]any{"storage_bytes": q.StorageBytes, "requests_per_day": q.RequestsPerDay}})
		}
		t.OwnerSuspended, t.Quota = u.Suspended, u.Quota.TenantQuota()
		t.UpdatedAt, t.Version = a.now, a.index
		if err := putTenant(a.txn, t); err != nil {
			return err
		}
		a.changed = append(a.changed, t.ID)
	}
	return nil
}

func applyDeleteUser(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[DeleteUser](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	u, found, err := getUser(a.txn, p.ID)
	if err != nil || !found {
		return nil, userNotFound(found, p.ID), err
	}
	ids, err := ownedTenantIDs(a.txn, u.ID)
	if err != nil {
		return nil, nil, err
	}
	if len(ids) > 0 {
		return nil, cluster.Errorf(cluster.ErrStaleVersion, "user %s still owns %d tenant(s) (deleted ones count until purged); delete and purge them first", u.ID, len(ids)), nil
	}
	if err := endSessions(a.txn, u.ID, ""); err != nil {
		return nil, nil, err
	}
	for _, k := range [][]byte{pendingKey(u.ID, cluster.QuotaMaxTenants), pendingKey(u.ID, cluster.QuotaStorageBytes), pendingKey(u.ID, cluster.QuotaRequestsPerDay)} {
		if err := a.txn.Delete(k); err != nil {
			return nil, nil, err
		}
	}
	if err := a.txn.Delete(userEmailKey(u.Email)); err != nil {
		return nil, nil, err
	}
	a.event(cluster.Event{Type: EventUserDeleted, User: u.ID})
	return u.User, nil, a.txn.Delete(userKey(u.ID))
}

// endSessions deletes every session of user but keep.
func endSessions(txn *badger.Txn, user, keep string) error {
	for _, sid := range userSessionIDs(txn, user) {
		if sid == keep {
			continue
		}
		if err := deleteSession(txn, user, sid); err != nil {
			return err
		}
	}
	return nil
}

// userSessionIDs lists the ids of user's sessions.
func userSessionIDs(txn *badger.Txn, user string) []string {
	var sids []string
	prefix := userSessionPrefix(user)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		sids = append(sids, string(bytes.TrimPrefix(it.Item().Key(), prefix)))
	}
	it.Close()
	return sids
}

// deleteSession deletes a session and its entry in its user's index.
func deleteSession(txn *badger.Txn, user, sid string) error {
	if err := txn.Delete(sessionKey(sid)); err != nil {
		return err
	}
	return txn.Delete(userSessionKey(user, sid))
}

func applyCreateSession(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateSession](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	s := p.Session
	u, found, err := getUser(a.txn, s.UserID)
	if err != nil || !found {
		return nil, userNotFound(found, s.UserID), err
	}
	if u.Suspended && s.Kind == cluster.SessionLogin {
		return nil, cluster.Errorf(cluster.ErrForbidden, "this account is suspended; contact the operator"), nil
	}
	if s.ID == "" || !s.ExpiresAt.After(a.now) {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "create session: id and a future expiry are required"), nil
	}
	s.CreatedAt = a.now
	if err := pruneSessions(a, s.UserID); err != nil {
		return nil, nil, err
	}
	if err := setJSON(a.txn, sessionKey(s.ID), s); err != nil {
		return nil, nil, err
	}
	return s.Session, nil, a.txn.Set(userSessionKey(s.UserID, s.ID), nil)
}

// pruneSessions deletes user's expired sessions. It runs at each of the
// user's logins, so a user keeps only the sessions still valid at their
// last login (an expired session is refused anyway; this bounds the state).
func pruneSessions(a *applyCtx, user string) error {
	for _, sid := range userSessionIDs(a.txn, user) {
		var s StoredSession
		found, err := getJSON(a.txn, sessionKey(sid), &s)
		if err != nil {
			return err
		}
		if found && s.ExpiresAt.After(a.now) {
			continue
		}
		if err := deleteSession(a.txn, user, sid); err != nil {
			return err
		}
	}
	return nil
}

func applyRotateSession(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RotateSession](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var s StoredSession
	found, err := getJSON(a.txn, sessionKey(p.ID), &s)
	if err != nil {
		return nil, nil, err
	}
	invalid := cluster.Errorf(cluster.ErrUnauthorized, "invalid or expired refresh token; log in again")
	if !found || s.RefreshHash == "" || !s.ExpiresAt.After(a.now) {
		return nil, invalid, nil
	}
	if s.RefreshHash != p.OldHash {
		// A refresh token used twice: whoever holds a copy loses the
		// session along with its owner.
		// (This rejection changes state on purpose.)
		return nil, invalid, deleteSession(a.txn, s.UserID, s.ID)
	}
	u, found, err := getUser(a.txn, s.UserID)
	if err != nil || !found || u.Suspended {
		if u.Suspended {
			return nil, cluster.Errorf(cluster.ErrForbidden, "this account is suspended; contact the operator"), nil
		}
		return nil, invalid, err
	}
	s.RefreshHash, s.ExpiresAt = p.NewHash, p.ExpiresAt
	return s.Session, nil, setJSON(a.txn, sessionKey(s.ID), s)
}

func applyDeleteSession(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[DeleteSession](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var s StoredSession
	found, err := getJSON(a.txn, sessionKey(p.ID), &s)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, cluster.Errorf(cluster.ErrNotFound, "session %q not found", p.ID), nil
	}
	return s.Session, nil, deleteSession(a.txn, s.UserID, s.ID)
}

func applyPruneSessions(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[PruneSessions](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	if p.Limit <= 0 {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "prune sessions: limit must be positive"), nil
	}
	var expired []StoredSession
	more := false
	err = scanJSON(a.txn, prefixSession, func(s *StoredSession) {
		if s.ExpiresAt.After(a.now) {
			return
		}
		if len(expired) == p.Limit {
			more = true
			return
		}
		expired = append(expired, *s)
	})
	if err != nil {
		return nil, nil, err
	}
	for _, s := range expired {
		if err := deleteSession(a.txn, s.UserID, s.ID); err != nil {
			return nil, nil, err
		}
	}
	return PrunedSessions{Deleted: len(expired), More: more}, nil, nil
}

func applyCreateTicket(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateTicket](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	if p.Ticket.Hash == "" || p.Ticket.Tenant == "" {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "create ticket: hash and tenant are required"), nil
	}
	if err := pruneTickets(a); err != nil {
		return nil, nil, err
	}
	return p.Ticket, nil, setJSON(a.txn, ticketKey(p.Ticket.Hash), p.Ticket)
}

// pruneTickets deletes a few expired tickets, so unused ones do not pile up.
func pruneTickets(a *applyCtx) error {
	var expired [][]byte
	err := scanJSONKeys(a.txn, prefixTicket, func(k []byte, t *Ticket) bool {
		if !t.ExpiresAt.After(a.now) {
			expired = append(expired, slices.Clone(k))
		}
		return len(expired) < pruneBatch
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := a.txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func applyRedeemTicket(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RedeemTicket](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var t Ticket
	found, err := getJSON(a.txn, ticketKey(p.Hash), &t)
	if err != nil {
		return nil, nil, err
	}
	bad := cluster.Errorf(cluster.ErrUnauthorized, "this sign-in link is invalid, used or expired; open the tenant from the dashboard again")
	if !found || t.Tenant != p.Tenant {
		return nil, bad, nil
	}
	// An expired ticket is deleted as it is refused (on purpose).
	if err := a.txn.Delete(ticketKey(p.Hash)); err != nil {
		return nil, nil, err
	}
	if !t.ExpiresAt.After(a.now) {
		return nil, bad, nil
	}
	return t, nil, nil
}

func applyCreateQuotaRequest(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateQuotaRequest](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	r := p.Request
	if !cluster.ValidQuotaKind(r.Kind) || r.ID == "" || r.Value < 0 {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "quota request: a known kind, an id and a non-negative value are required"), nil
	}
	if _, found, err := getUser(a.txn, r.UserID); err != nil || !found {
		return nil, userNotFound(found, r.UserID), err
	}
	var pending string
	if found, err := getJSON(a.txn, pendingKey(r.UserID, r.Kind), &pending); err != nil || found {
		if found {
			return nil, &cluster.Error{Code: cluster.ErrStaleVersion.Code,
				Message: fmt.Sprintf("a request for more %s is already pending (%s); wait for the operator's decision", r.Kind, pending),
				Data:    map[string]any{"pending": pending}}, nil
		}
		return nil, nil, err
	}
	r.State, r.CreatedAt = cluster.RequestPending, a.now
	a.event(cluster.Event{Type: EventQuotaRequested, User: r.UserID, Data: map[string]any{"request": r.ID, "kind": r.Kind, "value": r.Value}})
	if err := setJSON(a.txn, quotaReqKey(r.ID), r); err != nil {
		return nil, nil, err
	}
	return r, nil, setJSON(a.txn, pendingKey(r.UserID, r.Kind), r.ID)
}

func applyDecideQuotaRequest(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[DecideQuotaRequest](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var r cluster.QuotaRequest
	found, err := getJSON(a.txn, quotaReqKey(p.ID), &r)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, cluster.Errorf(cluster.ErrNotFound, "quota request %q not found", p.ID), nil
	}
	if r.State != cluster.RequestPending {
		return nil, cluster.Errorf(cluster.ErrStaleVersion, "quota request %s was already %s", r.ID, r.State), nil
	}
	r.State, r.Decision, r.DecidedBy, r.DecidedAt = cluster.RequestRejected, p.Reason, p.DecidedBy, &a.now
	if p.Approve {
		r.State = cluster.RequestApproved
		u, found, err := getUser(a.txn, r.UserID)
		if err != nil || !found {
			return nil, userNotFound(found, r.UserID), err
		}
		u.Quota = u.Quota.With(r.Kind, r.Value)
		u.UpdatedAt, u.Version = a.now, a.index
		if err := syncOwnedTenants(a, u.User); err != nil {
			return nil, nil, err
		}
		if err := setJSON(a.txn, userKey(u.ID), u); err != nil {
			return nil, nil, err
		}
	}
	if err := a.txn.Delete(pendingKey(r.UserID, r.Kind)); err != nil {
		return nil, nil, err
	}
	typ := EventQuotaRejected
	if p.Approve {
		typ = EventQuotaApproved
	}
	a.event(cluster.Event{Type: typ, User: r.UserID, Data: map[string]any{"request": r.ID, "kind": r.Kind, "value": r.Value}})
	return r, nil, setJSON(a.txn, quotaReqKey(r.ID), r)
}

func applyAppendAudit(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[AppendAudit](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	return nil, nil, writeAudit(a, p.Entries, 0)
}

// writeAudit records entries under this command's index, numbered from
// first (a command's own entries start at envelopeAudit).
func writeAudit(a *applyCtx, entries []cluster.AuditEntry, first int) error {
	for i, e := range entries {
		n := first + i
		e.ID, e.Time = fmt.Sprintf("%020d-%04d", a.index, n), a.now
		if err := setJSON(a.txn, auditKey(a.index, n), e); err != nil {
			return err
		}
	}
	if len(entries) == 0 {
		return nil
	}
	if err := pruneOld(a.txn, prefixAudit, a.now.Add(-AuditRetention), a.auditHorizon); err != nil {
		return err
	}
	if a.auditHorizon != nil {
		a.auditHorizon.recorded(a.now)
	}
	return nil
}

// AuditRetention is how long audit entries are kept, in command time.
const AuditRetention = 180 * 24 * time.Hour

func applyAddSigningKey(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[AddSigningKey](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var ring []SigningKey
	if _, err := getJSON(a.txn, keySigningKeys, &ring); err != nil {
		return nil, nil, err
	}
	if len(ring) >= p.IfFewerThan {
		return nil, nil, nil
	}
	if p.Key.ID == "" || len(p.Key.Secret) < 32 {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "signing key: an id and at least 32 bytes of secret are required"), nil
	}
	ring = append(ring, p.Key)
	return nil, nil, setJSON(a.txn, keySigningKeys, ring)
}

func getUser(txn *badger.Txn, id string) (StoredUser, bool, error) {
	var u StoredUser
	found, err := getJSON(txn, userKey(id), &u)
	return u, found, err
}

func userNotFound(found bool, id string) *cluster.Error {
	if found {
		return nil
	}
	return cluster.Errorf(cluster.ErrNotFound, "user %q not found", id)
}

// ownedTenantIDs lists the tenants (live or deleted, not purged) of user.
func ownedTenantIDs(txn *badger.Txn, user string) ([]string, error) {
	var ids []string
	prefix := ownerPrefix(user)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		ids = append(ids, string(bytes.TrimPrefix(it.Item().Key(), prefix)))
	}
	return ids, nil
}

// scanJSONKeys decodes values under prefix in key order until fn returns
// false.
func scanJSONKeys[T any](txn *badger.Txn, prefix []byte, fn func(k []byte, v *T) bool) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var v T
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
			return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
		}
		if !fn(it.Item().Key(), &v) {
			return nil
		}
	}
	return nil
}
