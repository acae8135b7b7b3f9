package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

func createUser(id, email string, maxTenants int) cmd {
	return cmd{typ: CmdCreateUser, payload: CreateUser{User: StoredUser{
		User:         cluster.User{ID: id, Email: email, Quota: cluster.UserQuota{MaxTenants: maxTenants, StorageBytes: 1 << 20}},
		PasswordHash: "$argon2id$hash-of-" + id,
	}}}
}

func ownedTenant(id, owner string) cmd {
	return cmd{typ: CmdCreateTenant, payload: CreateTenant{Tenant: cluster.Tenant{ID: id, Owner: owner}}}
}

func wantCode(t *testing.T, err error, want *cluster.Error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want code %s", err, want.Code)
	}
}

func TestUsers_EmailIsUnique(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 2))
	_, err := applyNext(t, s, createUser("u2", "a@example.com", 2))
	wantCode(t, err, cluster.ErrUserExists)
	u, err := s.UserByEmail("a@example.com")
	if err != nil || u.ID != "u1" || u.PasswordHash == "" {
		t.Fatalf("UserByEmail: %+v, %v", u, err)
	}
	if _, err := s.User("u2"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("the refused user exists: %v", err)
	}
}

func TestUsers_TenantQuotaIsEnforcedByTheStateMachine(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 2))
	mustApply(t, s, ownedTenant("one", "u1"))
	created := mustApply(t, s, ownedTenant("two", "u1")).(cluster.Tenant)
	if created.Owner != "u1" || created.Quota.StorageBytes != 1<<20 {
		t.Fatalf("tenant did not take the owner's quota: %+v", created)
	}
	_, err := applyNext(t, s, ownedTenant("three", "u1"))
	wantCode(t, err, cluster.ErrQuotaExceeded)
	var ce *cluster.Error
	errors.As(err, &ce)
	if ce.Data["current"] != 2 || ce.Data["max"] != 2 {
		t.Errorf("quota error data: %v", ce.Data)
	}
	// A deleted tenant frees its slot.
	mustApply(t, s, deleteTenant("one"))
	mustApply(t, s, ownedTenant("three", "u1"))
	ts, _ := s.TenantsOf("u1")
	if len(ts) != 3 {
		t.Fatalf("TenantsOf: %d tenants, want 3 (two live, one deleted)", len(ts))
	}
	_, err = applyNext(t, s, ownedTenant("four", "nobody"))
	wantCode(t, err, cluster.ErrNotFound)
}

func TestUsers_QuotaAndSuspensionReachTheirTenants(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 5))
	mustApply(t, s, ownedTenant("one", "u1"))
	mustApply(t, s, createTenant("other"))
	sub := s.Subscribe(16)
	defer sub.Close()
	q := cluster.UserQuota{MaxTenants: 5, StorageBytes: 42, RequestsPerDay: 7}
	mustApply(t, s, cmd{typ: CmdUpdateUser, payload: UpdateUser{ID: "u1", Quota: &q, Suspended: ptr(true)}})
	one, _ := s.Tenant("one")
	if one.Quota != (cluster.TenantQuota{StorageBytes: 42, RequestsPerDay: 7}) || !one.OwnerSuspended || !one.Blocked() {
		t.Fatalf("tenant one after its owner changed: %+v", one)
	}
	other, _ := s.Tenant("other")
	if other.Blocked() || other.Quota != (cluster.TenantQuota{}) {
		t.Fatalf("another owner's tenant changed: %+v", other)
	}
	select {
	case c := <-sub.C:
		if c.ID != "one" {
			t.Fatalf("change feed: %+v, want tenant one", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change feed did not report the owner's tenant")
	}
	_, err := applyNext(t, s, ownedTenant("two", "u1"))
	wantCode(t, err, cluster.ErrForbidden)
}

func TestSessions_RotateAndReuse(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 1))
	exp := t0.Add(time.Hour)
	mustApply(t, s, cmd{typ: CmdCreateSession, payload: CreateSession{Session: StoredSession{
		Session: cluster.Session{ID: "s1", UserID: "u1", Kind: cluster.SessionLogin, ExpiresAt: exp}, RefreshHash: "h1"}}})
	mustApply(t, s, cmd{typ: CmdRotateSession, payload: RotateSession{ID: "s1", OldHash: "h1", NewHash: "h2", ExpiresAt: exp}})
	// h1 again: a copy of the old refresh token is in someone's hands.
	_, err := applyNext(t, s, cmd{typ: CmdRotateSession, payload: RotateSession{ID: "s1", OldHash: "h1", NewHash: "h3", ExpiresAt: exp}})
	wantCode(t, err, cluster.ErrUnauthorized)
	if _, err := s.Session("s1"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("reuse of a rotated refresh token did not end the session: %v", err)
	}
	// Expired sessions cannot be rotated.
	mustApply(t, s, cmd{typ: CmdCreateSession, payload: CreateSession{Session: StoredSession{
		Session: cluster.Session{ID: "s2", UserID: "u1", Kind: cluster.SessionLogin, ExpiresAt: exp}, RefreshHash: "h1"}}})
	_, err = applyNext(t, s, cmd{typ: CmdRotateSession, at: exp.Add(time.Second), payload: RotateSession{ID: "s2", OldHash: "h1", NewHash: "h2", ExpiresAt: exp.Add(time.Hour)}})
	wantCode(t, err, cluster.ErrUnauthorized)
	// The user's next login removes their expired sessions.
	mustApply(t, s, cmd{typ: CmdCreateSession, at: exp.Add(time.Minute), payload: CreateSession{Session: StoredSession{
		Session: cluster.Session{ID: "s3", UserID: "u1", Kind: cluster.SessionLogin, ExpiresAt: exp.Add(time.Hour)}, RefreshHash: "h1"}}})
	if _, err := s.Session("s2"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("expired session kept after the next login: %v", err)
	}
	if ss, _ := s.Sessions("u1"); len(ss) != 1 || ss[0].ID != "s3" {
		t.Fatalf("sessions after the next login: %+v", ss)
	}
}

func TestSessions_PruneExpired(t *testing.T) {
	s := openStore(t)
	exp := t0.Add(time.Hour)
	for _, u := range []string{"u1", "u2"} {
		mustApply(t, s, createUser(u, u+"@example.com", 1))
	}
	session := func(id, user string, expires time.Time) cmd {
		return cmd{typ: CmdCreateSession, payload: CreateSession{Session: StoredSession{
			Session: cluster.Session{ID: id, UserID: user, Kind: cluster.SessionLogin, ExpiresAt: expires}, RefreshHash: "h"}}}
	}
	mustApply(t, s, session("old-1", "u1", exp))
	mustApply(t, s, session("old-2", "u2", exp))
	mustApply(t, s, session("old-3", "u2", exp))
	mustApply(t, s, session("live", "u1", exp.Add(24*time.Hour)))
	prune := func(limit int) PrunedSessions {
		t.Helper()
		return mustApply(t, s, cmd{typ: CmdPruneSessions, at: exp.Add(time.Minute), payload: PruneSessions{Limit: limit}}).(PrunedSessions)
	}
	if got := prune(2); got.Deleted != 2 || !got.More {
		t.Fatalf("first prune: %+v, want 2 deleted and more", got)
	}
	if got := prune(2); got.Deleted != 1 || got.More {
		t.Fatalf("second prune: %+v, want 1 deleted and no more", got)
	}
	if got := prune(2); got.Deleted != 0 || got.More {
		t.Fatalf("third prune: %+v, want nothing", got)
	}
	if ss, _ := s.Sessions("u1"); len(ss) != 1 || ss[0].ID != "live" {
		t.Fatalf("u1's sessions: %+v, want only the live one", ss)
	}
	if ss, _ := s.Sessions("u2"); len(ss) != 0 {
		t.Fatalf("u2's sessions: %+v, want none", ss)
	}
	_, err := applyNext(t, s, cmd{typ: CmdPruneSessions, payload: PruneSessions{}})
	wantCode(t, err, cluster.ErrInvalidInput)
}

func TestUsers_PasswordChangeEndsOtherSessions(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 1))
	for _, id := range []string{"s1", "s2", "s3"} {
		mustApply(t, s, cmd{typ: CmdCreateSession, payload: CreateSession{Session: StoredSession{
			Session: cluster.Session{ID: id, UserID: "u1", Kind: cluster.SessionLogin, ExpiresAt: t0.Add(time.Hour)}}}})
	}
	mustApply(t, s, cmd{typ: CmdUpdateUser, at: t0.Add(time.Minute), payload: UpdateUser{ID: "u1", PasswordHash: ptr("$argon2id$new"), KeepSession: "s2"}})
	ss, _ := s.Sessions("u1")
	if len(ss) != 1 || ss[0].ID != "s2" {
		t.Fatalf("sessions after a password change: %+v, want only s2", ss)
	}
	u, _ := s.User("u1")
	if u.PasswordHash != "$argon2id$new" || !u.PasswordChangedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("user after a password change: %+v", u)
	}
}

func TestTickets_SingleUseBoundAndExpiring(t *testing.T) {
	s := openStore(t)
	exp := t0.Add(time.Minute)
	for _, h := range []string{"a", "b", "c"} {
		mustApply(t, s, cmd{typ: CmdCreateTicket, payload: CreateTicket{Ticket: Ticket{Hash: h, Tenant: "acme", ExpiresAt: exp}}})
	}
	mustApply(t, s, cmd{typ: CmdRedeemTicket, payload: RedeemTicket{Hash: "a", Tenant: "acme"}})
	_, err := applyNext(t, s, cmd{typ: CmdRedeemTicket, payload: RedeemTicket{Hash: "a", Tenant: "acme"}})
	wantCode(t, err, cluster.ErrUnauthorized) // reused
	_, err = applyNext(t, s, cmd{typ: CmdRedeemTicket, payload: RedeemTicket{Hash: "b", Tenant: "other"}})
	wantCode(t, err, cluster.ErrUnauthorized) // another tenant's host
	mustApply(t, s, cmd{typ: CmdRedeemTicket, payload: RedeemTicket{Hash: "b", Tenant: "acme"}})
	_, err = applyNext(t, s, cmd{typ: CmdRedeemTicket, at: exp.Add(time.Second), payload: RedeemTicket{Hash: "c", Tenant: "acme"}})
	wantCode(t, err, cluster.ErrUnauthorized) // expired
}

func TestQuotaRequests_OnePendingPerKindAndApproval(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 1))
	mustApply(t, s, ownedTenant("one", "u1"))
	req := func(id, kind string, v int64) cmd {
		return cmd{typ: CmdCreateQuotaRequest, payload: CreateQuotaRequest{Request: cluster.QuotaRequest{ID: id, UserID: "u1", Kind: kind, Value: v, Reason: "growth"}}}
	}
	mustApply(t, s, req("q1", cluster.QuotaMaxTenants, 3))
	_, err := applyNext(t, s, req("q2", cluster.QuotaMaxTenants, 4))
	wantCode(t, err, cluster.ErrStaleVersion)
	mustApply(t, s, req("q3", cluster.QuotaRequestsPerDay, 1000))
	mustApply(t, s, cmd{typ: CmdDecideQuotaRequest, payload: DecideQuotaRequest{ID: "q1", Approve: true, DecidedBy: "operator:x"}})
	mustApply(t, s, cmd{typ: CmdDecideQuotaRequest, payload: DecideQuotaRequest{ID: "q3", Approve: false, Reason: "no", DecidedBy: "operator:x"}})
	_, err = applyNext(t, s, cmd{typ: CmdDecideQuotaRequest, payload: DecideQuotaRequest{ID: "q3", Approve: true}})
	wantCode(t, err, cluster.ErrStaleVersion)
	u, _ := s.User("u1")
	if u.Quota.MaxTenants != 3 || u.Quota.RequestsPerDay != 0 {
		t.Fatalf("quota after decisions: %+v", u.Quota)
	}
	mustApply(t, s, ownedTenant("two", "u1")) // the approved quota applies at once
	mustApply(t, s, req("q4", cluster.QuotaMaxTenants, 10))
	pending, _ := s.QuotaRequests("", cluster.RequestPending)
	if len(pending) != 1 || pending[0].ID != "q4" {
		t.Fatalf("pending requests: %+v", pending)
	}
}

func TestAudit_NewestFirstAndFiltered(t *testing.T) {
	s := openStore(t)
	for i, u := range []string{"u1", "u2", "u1"} {
		mustApply(t, s, cmd{typ: CmdAppendAudit, at: t0.Add(time.Duration(i) * time.Second), payload: AppendAudit{Entries: []cluster.AuditEntry{{Actor: "user:" + u, UserID: u, Action: "login"}}}})
	}
	all, _ := s.Audit(AuditFilter{Limit: 10})
	if len(all) != 3 || !all[0].Time.After(all[2].Time) {
		t.Fatalf("audit: %+v", all)
	}
	mine, _ := s.Audit(AuditFilter{UserID: "u1", Limit: 10})
	if len(mine) != 2 {
		t.Fatalf("audit of u1: %d entries, want 2", len(mine))
	}
	page, _ := s.Audit(AuditFilter{Before: all[0].ID, Limit: 10})
	if len(page) != 2 || page[0].ID != all[1].ID {
		t.Fatalf("audit before %s: %+v", all[0].ID, page)
	}
	// Entries older than the retention are pruned as new ones arrive.
	mustApply(t, s, cmd{typ: CmdAppendAudit, at: t0.Add(AuditRetention + time.Hour), payload: AppendAudit{Entries: []cluster.AuditEntry{{Actor: "user:u3", UserID: "u3", Action: "login"}}}})
	if kept, _ := s.Audit(AuditFilter{Limit: 10}); len(kept) != 1 || kept[0].UserID != "u3" {
		t.Fatalf("after the retention: %+v", kept)
	}
}

func TestUsers_DeleteNeedsNoTenants(t *testing.T) {
	s := openStore(t)
	mustApply(t, s, createUser("u1", "a@example.com", 1))
	mustApply(t, s, ownedTenant("one", "u1"))
	_, err := applyNext(t, s, cmd{typ: CmdDeleteUser, payload: DeleteUser{ID: "u1"}})
	wantCode(t, err, cluster.ErrStaleVersion)
	mustApply(t, s, deleteTenant("one"))
	mustApply(t, s, cmd{typ: CmdPurgeTenant, payload: PurgeTenant{ID: "one"}})
	mustApply(t, s, cmd{typ: CmdDeleteUser, payload: DeleteUser{ID: "u1"}})
	if _, err := s.UserByEmail("a@example.com"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("deleted user still found by e-mail: %v", err)
	}
	mustApply(t, s, createUser("u2", "a@example.com", 1)) // the address is free again
}

func TestAudit_RecordedWithItsCommandOnlyWhenItSucceeds(t *testing.T) {
	s := openStore(t)
	entry := []cluster.AuditEntry{{Actor: "operator:x", Action: "tenant_create", Target: "acme"}}
	data, err := EncodeAuditedCommand(CmdCreateTenant, "", t0, CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}, entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(1, data); err != nil {
		t.Fatal(err)
	}
	// The same create again fails: its audit entry is not recorded.
	data, _ = EncodeAuditedCommand(CmdCreateTenant, "", t0, CreateTenant{Tenant: cluster.Tenant{ID: "acme"}}, entry)
	if _, err := s.Apply(2, data); !errors.Is(err, cluster.ErrTenantExists) {
		t.Fatalf("second create: %v", err)
	}
	es, _ := s.Audit(AuditFilter{Limit: 10})
	if len(es) != 1 || es[0].Target != "acme" || !es[0].Time.Equal(t0) {
		t.Fatalf("audit: %+v", es)
	}
}

func TestEvents_DescribeWhatCommandsDid(t *testing.T) {
	s := openStore(t)
	changed := s.EventsChanged()
	mustApply(t, s, createUser("u1", "a@example.com", 2))
	select {
	case <-changed:
	default:
		t.Fatal("EventsChanged was not closed by a command with events")
	}
	mustApply(t, s, ownedTenant("one", "u1"))
	mustApply(t, s, cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "one", Node: ptr("n1"), Epoch: ptr(uint64(1))}})
	mustApply(t, s, cmd{typ: CmdUpdateTenant, payload: UpdateTenant{ID: "one", Node: ptr("n2"), Epoch: ptr(uint64(2))}})
	mustApply(t, s, cmd{typ: CmdUpdateUser, payload: UpdateUser{ID: "u1", Suspended: ptr(true)}})
	_, err := applyNext(t, s, ownedTenant("two", "u1")) // refused: no event
	wantCode(t, err, cluster.ErrForbidden)
	mustApply(t, s, deleteTenant("one"))
	all, _, err := s.Events(EventFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range all {
		types = append(types, e.Type)
	}
	want := []string{EventUserSignedUp, EventTenantCreated, EventTenantPlaced, EventTenantMoved, EventUserSuspended, EventTenantSuspended, EventTenantDeleted}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", types, want)
	}
	if all[3].Node != "n2" || all[3].Data["from"] != "n1" {
		t.Errorf("move event: %+v", all[3])
	}
	// Resuming after an id gives what follows it; filters by family.
	rest, _, _ := s.Events(EventFilter{After: all[2].ID, Limit: 100})
	if len(rest) != 4 || rest[0].ID != all[3].ID {
		t.Fatalf("after %s: %+v", all[2].ID, rest)
	}
	tenants, _, _ := s.Events(EventFilter{Types: []string{"tenant.*"}, Limit: 100})
	if len(tenants) != 5 {
		t.Fatalf("tenant.* events: %d, want 5", len(tenants))
	}
	last, _ := s.LastEventID()
	if last != all[len(all)-1].ID {
		t.Fatalf("LastEventID %q, want %q", last, all[len(all)-1].ID)
	}
	// Events older than the retention are pruned as new ones arrive.
	mustApply(t, s, cmd{typ: CmdCreateTenant, at: t0.Add(EventRetention + time.Hour), payload: CreateTenant{Tenant: cluster.Tenant{ID: "late"}}})
	kept, _, _ := s.Events(EventFilter{Limit: 100})
	if len(kept) != 1 || kept[0].Tenant != "late" {
		t.Fatalf("after the retention: %+v", kept)
	}
}
