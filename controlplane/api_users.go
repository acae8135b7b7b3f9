package controlplane

import (
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Impersonation limits.
const (
	DefaultImpersonationTTL = time.Hour
	MaxImpersonationTTL     = 8 * time.Hour
	maxListLimit            = 1000
)

// listLimit reads ?limit= (default def, at most maxListLimit).
func listLimit(r *http.Request, def int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, cluster.Errorf(cluster.ErrInvalidInput, "query parameter \"limit\" must be 1 to %d", maxListLimit)
	}
	return n, nil
}

func (c *ControlPlane) handleListUsers(w http.ResponseWriter, r *http.Request) {
	limit, err := listLimit(r, 100)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	q := r.URL.Query().Get("q")
	if len(q) > cluster.MaxEmailLen {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "query parameter \"q\" is too long"))
		return
	}
	us, err := c.store.Users(q, limit)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": us, "total": len(us)})
}

// userDetail is a customer as an operator sees them.
type userDetail struct {
	cluster.User
	Tenants       []tenantView           `json:"tenants"`
	QuotaRequests []cluster.QuotaRequest `json:"quota_requests"`
	Sessions      []cluster.Session      `json:"sessions"`
}

func (c *ControlPlane) pathUser(r *http.Request) (store.StoredUser, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 || !utf8.ValidString(id) {
		return store.StoredUser{}, cluster.Errorf(cluster.ErrNotFound, "user not found")
	}
	return c.store.User(id)
}

func (c *ControlPlane) handleGetUser(w http.ResponseWriter, r *http.Request) {
	u, err := c.pathUser(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	d := userDetail{User: u.User, Tenants: []tenantView{}}
	ts, err := c.store.TenantsOf(u.ID)
	if err == nil {
		for _, t := range ts {
			d.Tenants = append(d.Tenants, c.view(t))
		}
		d.QuotaRequests, err = c.store.QuotaRequests(u.ID, "")
	}
	if err == nil {
		d.Sessions, err = c.store.Sessions(u.ID)
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

type updateUserRequest struct {
	Quota     *cluster.UserQuota `json:"quota"`
	Suspended *bool              `json:"suspended"`
	Verified  *bool              `json:"verified"`
}

// handleUpdateUser sets a customer's quotas, suspension or verification;
// their tenants follow at once.
func (c *ControlPlane) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	u, err := c.pathUser(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req updateUserRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.Quota == nil && req.Suspended == nil && req.Verified == nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `send at least one of "quota", "suspended" and "verified"`))
		return
	}
	if q := req.Quota; q != nil && (q.MaxTenants < 0 || q.StorageBytes < 0 || q.RequestsPerDay < 0) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `"quota" values must not be negative (0 storage or requests means unlimited)`))
		return
	}
	res, err := c.apply(r.Context(), store.CmdUpdateUser, r.Header.Get(IdempotencyKeyHeader), store.UpdateUser{
		ID: u.ID, Quota: req.Quota, Suspended: req.Suspended, Verified: req.Verified,
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	nu := res.(cluster.User)
	if req.Quota != nil {
		c.audit(r, auditQuotaChange, u.ID, u.ID, quotaDetail(nu.Quota))
	}
	if req.Suspended != nil && *req.Suspended != u.Suspended {
		action := auditUnsuspend
		if *req.Suspended {
			action = auditSuspend
		}
		c.audit(r, action, u.ID, u.ID, "")
	}
	c.pushOwned(r, u.ID)
	writeJSON(w, http.StatusOK, nu)
}

func quotaDetail(q cluster.UserQuota) string {
	return "max_tenants=" + strconv.Itoa(q.MaxTenants) + " storage_bytes=" + strconv.FormatInt(q.StorageBytes, 10) +
		" requests_per_day=" + strconv.FormatInt(q.RequestsPerDay, 10)
}

// pushOwned tells the nodes serving a customer's tenants about their new
// quota or suspension.
func (c *ControlPlane) pushOwned(r *http.Request, user string) {
	ts, err := c.store.TenantsOf(user)
	if err != nil {
		c.logger.Warn("push tenants of user", "user", user, "error", err)
		return
	}
	for _, t := range ts {
		if t.State == cluster.TenantActive {
			c.pushTenant(r.Context(), t)
		}
	}
}

func (c *ControlPlane) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	u, err := c.pathUser(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if _, err := c.apply(r.Context(), store.CmdDeleteUser, r.Header.Get(IdempotencyKeyHeader), store.DeleteUser{ID: u.ID}); err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, auditUserDelete, u.ID, u.ID, u.Email)
	w.WriteHeader(http.StatusNoContent)
}

type impersonateRequest struct {
	// TTL is the session's length in seconds (default an hour).
	TTL int `json:"ttl"`
}

// handleImpersonate gives an operator a time-boxed access token acting as
// the customer; every action with it is audited as an impersonation.
func (c *ControlPlane) handleImpersonate(w http.ResponseWriter, r *http.Request) {
	u, err := c.pathUser(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req impersonateRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	ttl := DefaultImpersonationTTL
	if req.TTL != 0 {
		ttl = time.Duration(req.TTL) * time.Second
		if req.TTL < 60 || ttl > MaxImpersonationTTL {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "field \"ttl\" must be 60 to %d seconds", int(MaxImpersonationTTL.Seconds())))
			return
		}
	}
	op := principal(r)
	pair, err := c.newSession(r.Context(), u.User, cluster.SessionImpersonation, op.ID, clientIP(r), ttl,
		auditEntry(r, auditImpersonate, u.ID, u.ID, "ttl="+ttl.String()))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	claims, _ := c.signer.Verify(pair.AccessToken)
	writeJSON(w, http.StatusCreated, map[string]any{
		"access_token": pair.AccessToken, "token_type": "Bearer", "expires_at": pair.ExpiresAt,
		"session_id": claims.SessionID, "user": u.User,
	})
}

// handleRevokeSession ends any session: a customer's login or an
// impersonation.
func (c *ControlPlane) handleRevokeSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > 64 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotFound, "session not found"))
		return
	}
	res, err := c.apply(r.Context(), store.CmdDeleteSession, "", store.DeleteSession{ID: id})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	s := res.(cluster.Session)
	c.audit(r, auditSessionRevoke, s.UserID, s.ID, s.Kind)
	w.WriteHeader(http.StatusNoContent)
}

type quotaRequestBody struct {
	Kind   string `json:"kind"`
	Value  int64  `json:"value"`
	Reason string `json:"reason"`
}

// handleCreateQuotaRequest records a customer's request for more quota.
func (c *ControlPlane) handleCreateQuotaRequest(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p.Kind != auth.KindCustomer {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "quota requests are made by customers; operators set quotas with PATCH /api/cp/users/{id}"))
		return
	}
	var req quotaRequestBody
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if !cluster.ValidQuotaKind(req.Kind) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "kind" must be max_tenants, storage_bytes or requests_per_day`))
		return
	}
	if req.Reason == "" || !utf8.ValidString(req.Reason) || len(req.Reason) > cluster.MaxReasonLen {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "reason" is required: up to %d bytes saying why you need more`, cluster.MaxReasonLen))
		return
	}
	u, err := c.store.User(p.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if cur := u.Quota.Get(req.Kind); req.Value <= cur || (req.Kind == cluster.QuotaMaxTenants && req.Value > 1_000_000) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "value" must be more than your current %s (%d)`, req.Kind, cur))
		return
	}
	res, err := c.apply(r.Context(), store.CmdCreateQuotaRequest, r.Header.Get(IdempotencyKeyHeader), store.CreateQuotaRequest{
		Request: cluster.QuotaRequest{ID: "q" + randomHex(8), UserID: p.ID, Kind: req.Kind, Value: req.Value, Reason: req.Reason},
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	qr := res.(cluster.QuotaRequest)
	c.audit(r, auditQuotaRequest, p.ID, qr.ID, req.Kind+"="+strconv.FormatInt(req.Value, 10))
	writeJSON(w, http.StatusCreated, qr)
}

// handleListQuotaRequests lists quota requests: a customer's own, or for
// operators everyone's (?state=pending|approved|rejected, ?user=).
func (c *ControlPlane) handleListQuotaRequests(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	user, state := r.URL.Query().Get("user"), r.URL.Query().Get("state")
	if p.Kind == auth.KindCustomer {
		user = p.ID
	}
	switch state {
	case "", cluster.RequestPending, cluster.RequestApproved, cluster.RequestRejected:
	default:
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `query parameter "state" must be pending, approved or rejected`))
		return
	}
	rs, err := c.store.QuotaRequests(user, state)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": rs, "total": len(rs)})
}

type decisionBody struct {
	Reason string `json:"reason"`
}

func (c *ControlPlane) handleApproveQuota(w http.ResponseWriter, r *http.Request) {
	c.decideQuota(w, r, true)
}

func (c *ControlPlane) handleRejectQuota(w http.ResponseWriter, r *http.Request) {
	c.decideQuota(w, r, false)
}

// decideQuota approves (the new value applies at once) or rejects a quota
// request and e-mails the customer.
func (c *ControlPlane) decideQuota(w http.ResponseWriter, r *http.Request, approve bool) {
	var req decisionBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	if !utf8.ValidString(req.Reason) || len(req.Reason) > cluster.MaxReasonLen {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "reason" must be text of at most %d bytes`, cluster.MaxReasonLen))
		return
	}
	if !approve && req.Reason == "" {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "reason" is required when rejecting: tell the customer why`))
		return
	}
	id := r.PathValue("id")
	if len(id) > 64 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotFound, "quota request not found"))
		return
	}
	res, err := c.apply(r.Context(), store.CmdDecideQuotaRequest, r.Header.Get(IdempotencyKeyHeader), store.DecideQuotaRequest{
		ID: id, Approve: approve, Reason: req.Reason, DecidedBy: principal(r).Actor(),
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	qr := res.(cluster.QuotaRequest)
	c.audit(r, auditQuotaDecision, qr.UserID, qr.ID, qr.State)
	if approve {
		c.pushOwned(r, qr.UserID)
	}
	if u, err := c.store.User(qr.UserID); err == nil {
		d := c.mailData(u.Email, c.cfg.BaseURL+"/")
		d.Kind, d.Value, d.State, d.Reason = qr.Kind, qr.Value, qr.State, qr.Decision
		c.mailer.mail("quota_decision", u.Email, d)
	}
	writeJSON(w, http.StatusOK, qr)
}

// handleAudit lists audit entries, newest first: everything for
// operators (?user=, ?action=), a customer's own for customers.
func (c *ControlPlane) handleAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := listLimit(r, 100)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	q := r.URL.Query()
	f := store.AuditFilter{UserID: q.Get("user"), Action: q.Get("action"), Before: q.Get("before"), Limit: limit}
	if p := principal(r); p.Kind == auth.KindCustomer {
		f.UserID = p.ID
	}
	if len(f.Before) > 40 || len(f.UserID) > 64 || len(f.Action) > 40 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "query parameters user, action and before are too long"))
		return
	}
	es, err := c.store.Audit(f)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": es, "total": len(es)})
}

type createTokenRequest struct {
	Name string `json:"name"`
}

// handleCreateToken creates an operator token; its secret is shown once.
func (c *ControlPlane) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := validateName(req.Name); err != nil {
		cluster.WriteError(w, err)
		return
	}
	secret := cluster.NewTokenSecret()
	hash := cluster.HashToken(secret)
	res, err := c.apply(r.Context(), store.CmdCreateToken, r.Header.Get(IdempotencyKeyHeader), store.CreateToken{
		Token: cluster.Token{ID: cluster.TokenID(hash), Name: req.Name, Hash: hash},
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	tok := res.(cluster.Token)
	c.audit(r, auditTokenCreate, "", tok.ID, req.Name)
	writeJSON(w, http.StatusCreated, map[string]any{"id": tok.ID, "name": tok.Name, "created_at": tok.CreatedAt, "token": secret})
}

func (c *ControlPlane) handleListTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := c.store.Tokens()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": toks, "total": len(toks)})
}

func (c *ControlPlane) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if toks, err := c.store.Tokens(); err == nil && len(toks) == 1 && toks[0].ID == id {
		{
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "this is the last operator token; create another before revoking it"))
			return
		}
	}
	if _, err := c.apply(r.Context(), store.CmdRevokeToken, r.Header.Get(IdempotencyKeyHeader), store.RevokeToken{ID: id}); err != nil {
		if errors.Is(err, cluster.ErrInvalidInput) {
			err = cluster.Errorf(cluster.ErrTokenNotFound, "token %q not found", id)
		}
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, auditTokenRevoke, "", id, "")
	w.WriteHeader(http.StatusNoContent)
}
