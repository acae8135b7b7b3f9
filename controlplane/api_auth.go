package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/email"
)

// Customer sessions and e-mailed links.
const (
	// SessionTTL is how long a login lasts without use; every refresh
	// extends it.
	SessionTTL = 30 * 24 * time.Hour
	// VerifyLinkTTL is how long an address-verification link works.
	VerifyLinkTTL = 48 * time.Hour
	// ResetLinkTTL is how long a password-reset link works.
	ResetLinkTTL = time.Hour
)

// Audit actions.
const (
	auditSignup          = "signup"
	auditVerify          = "verify_email"
	auditLogin           = "login"
	auditLoginFailed     = "login_failed"
	auditLogout          = "logout"
	auditPasswordChange  = "password_change"
	auditPasswordReset   = "password_reset"
	auditTenantCreate    = "tenant_create"
	auditTenantDelete    = "tenant_delete"
	auditSSO             = "sso"
	auditQuotaRequest    = "quota_request"
	auditQuotaDecision   = "quota_decision"
	auditQuotaChange     = "quota_change"
	auditSuspend         = "suspend"
	auditUnsuspend       = "unsuspend"
	auditImpersonate     = "impersonate"
	auditSessionRevoke   = "session_revoke"
	auditTokenCreate     = "token_create"
	auditTokenRevoke     = "token_revoke"
	auditUserDelete      = "user_delete"
	auditTenantSuspend   = "tenant_suspend"
	auditTenantUnsuspend = "tenant_unsuspend"
)

// auditEntry describes a security-relevant action of the request's
// caller. userID is the customer the entry concerns (shown in their own
// audit view).
func auditEntry(r *http.Request, action, userID, target, detail string) cluster.AuditEntry {
	p := principal(r)
	e := cluster.AuditEntry{Actor: p.Actor(), Impersonator: p.Impersonator, UserID: userID,
		Action: action, Target: target, IP: clientIP(r), Detail: detail}
	if p.Kind == "" && userID != "" && action != auditLoginFailed {
		e.Actor = "user:" + userID
	}
	return e
}

// audit records a security-relevant action that was not recorded with its
// own command. A failure to record is logged, not returned: the action
// itself has happened.
func (c *ControlPlane) audit(r *http.Request, action, userID, target, detail string) {
	e := auditEntry(r, action, userID, target, detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.ApplyTimeout)
	defer cancel()
	if _, err := c.apply(ctx, store.CmdAppendAudit, "", store.AppendAudit{Entries: []cluster.AuditEntry{e}}); err != nil {
		c.logger.Error("record audit entry", "action", action, "error", err)
	}
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// accepted is the answer of requests whose outcome must not reveal whether
// an account exists.
func accepted(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusAccepted, map[string]string{"message": msg})
}

func (c *ControlPlane) handleSignup(w http.ResponseWriter, r *http.Request) {
	var req credentials
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	addr, err := cluster.NormalizeEmail(req.Email)
	if err == nil {
		err = cluster.ValidatePassword("password", req.Password)
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	const msg = "check your e-mail: we sent a link to verify your address"
	if ok, until := c.limits.blocked("signup-ip:"+clientIP(r), maxFailuresPerIP); ok {
		writeRateLimited(w, until, "too many sign-ups from your address; retry later")
		return
	}
	c.limits.fail("signup-ip:" + clientIP(r))
	hash := auth.HashPassword(req.Password)
	u := store.StoredUser{User: cluster.User{ID: "u" + randomHex(8), Email: addr, Quota: c.cfg.DefaultQuota}, PasswordHash: hash}
	res, err := c.applyAudited(r.Context(), store.CmdCreateUser, "", store.CreateUser{User: u}, auditEntry(r, auditSignup, u.ID, u.ID, ""))
	if errors.Is(err, cluster.ErrUserExists) {
		c.mailer.mail("signup_exists", addr, c.mailData(addr, c.cfg.BaseURL+"/"))
		accepted(w, msg)
		return
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	nu := res.(cluster.User)
	c.sendVerification(nu)
	accepted(w, msg)
}

func (c *ControlPlane) mailData(to, link string) email.Data {
	return email.Data{Product: "pbe", Email: to, Link: link, BaseURL: c.cfg.BaseURL}
}

// sendVerification e-mails u a link that verifies their address.
func (c *ControlPlane) sendVerification(u cluster.User) {
	tok, err := c.signer.SignLink(auth.AudienceVerify, u.ID, u.Email, VerifyLinkTTL)
	if err != nil {
		c.logger.Error("sign verification link", "error", err)
		return
	}
	c.mailer.mail("verify", u.Email, c.mailData(u.Email, c.cfg.BaseURL+"/api/cp/auth/verify?token="+url.QueryEscape(tok)))
}

type tokenRequest struct {
	Token string `json:"token"`
}

// handleVerify verifies an address from the e-mailed link (GET, answered
// with a small page for the browser) or from an API call (POST).
func (c *ControlPlane) handleVerify(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if r.Method == http.MethodPost {
		var req tokenRequest
		if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
			cluster.WriteError(w, err)
			return
		}
		tok = req.Token
	}
	u, err := c.verifyEmail(r, tok)
	if r.Method == http.MethodGet && !strings.Contains(r.Header.Get("Accept"), "application/json") {
		page := "Your e-mail address is verified. You can close this page and create tenants."
		status := http.StatusOK
		if err != nil {
			page, status = "This verification link is invalid or has expired. Log in and ask for a new one.", http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>pbe</title><p>%s</p>\n", template.HTMLEscapeString(page))
		return
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (c *ControlPlane) verifyEmail(r *http.Request, tok string) (cluster.User, error) {
	bad := cluster.Errorf(cluster.ErrInvalidInput, "the verification link is invalid or has expired; ask for a new one")
	if tok == "" {
		return cluster.User{}, bad
	}
	id, addr, err := c.signer.VerifyLink(auth.AudienceVerify, tok)
	if err != nil {
		return cluster.User{}, bad
	}
	u, err := c.store.User(id)
	if err != nil || u.Email != addr {
		return cluster.User{}, bad
	}
	if u.Verified {
		return u.User, nil
	}
	verified := true
	res, err := c.apply(r.Context(), store.CmdUpdateUser, "verify-"+id, store.UpdateUser{ID: id, Verified: &verified})
	if err != nil {
		return cluster.User{}, err
	}
	c.audit(r, auditVerify, id, id, "")
	return res.(cluster.User), nil
}

// handleResendVerification e-mails a new verification link to the caller.
func (c *ControlPlane) handleResendVerification(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	u, err := c.store.User(p.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if !u.Verified {
		c.sendVerification(u.User)
	}
	accepted(w, "if your address is not verified yet, a new link is on its way")
}

// tokenPair is what login and refresh return.
type tokenPair struct {
	AccessToken  string       `json:"access_token"`
	RefreshToken string       `json:"refresh_token,omitempty"`
	TokenType    string       `json:"token_type"`
	ExpiresIn    int          `json:"expires_in"`
	ExpiresAt    time.Time    `json:"expires_at"`
	User         cluster.User `json:"user"`
}

func (c *ControlPlane) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req credentials
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	invalid := cluster.Errorf(cluster.ErrUnauthorized, "wrong e-mail or password")
	addr, err := cluster.NormalizeEmail(req.Email)
	if err != nil || len(req.Password) > cluster.MaxUserPassword {
		cluster.WriteError(w, invalid)
		return
	}
	ipKey, acctKey := "ip:"+clientIP(r), "account:"+addr
	if ok, until := c.limits.blocked(ipKey, maxFailuresPerIP); ok {
		writeRateLimited(w, until, "too many failed logins from your address; retry later")
		return
	}
	if ok, until := c.limits.blocked(acctKey, maxFailuresPerAccount); ok {
		writeRateLimited(w, until, "too many failed logins for this account; retry later or reset your password")
		return
	}
	u, err := c.store.UserByEmail(addr)
	if err != nil && !errors.Is(err, cluster.ErrNotFound) {
		cluster.WriteError(w, err)
		return
	}
	if err != nil || !auth.CheckPassword(u.PasswordHash, req.Password) {
		if err != nil {
			auth.CheckNoPassword(req.Password)
		}
		c.limits.fail(ipKey)
		c.limits.fail(acctKey)
		c.audit(r, auditLoginFailed, u.ID, addr, "")
		cluster.WriteError(w, invalid)
		return
	}
	c.limits.reset(acctKey)
	pair, err := c.newSession(r.Context(), u.User, cluster.SessionLogin, "", clientIP(r), SessionTTL, auditEntry(r, auditLogin, u.ID, u.ID, ""))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pair)
}

func writeRateLimited(w http.ResponseWriter, until time.Time, msg string) {
	secs := int(time.Until(until).Seconds()) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = jsonEncode(w, cluster.ErrorBody{Code: cluster.ErrRateLimited.Code, Message: msg, Data: map[string]any{"retry_after": secs}})
}

// newSession records a session and returns its tokens. An impersonation
// session has no refresh token.
func (c *ControlPlane) newSession(ctx context.Context, u cluster.User, kind, operator, ip string, ttl time.Duration, audit ...cluster.AuditEntry) (tokenPair, error) {
	sid := randomHex(16)
	secret, refresh := "", ""
	if kind == cluster.SessionLogin {
		secret = randomSecret()
		refresh = sid + "." + secret
	}
	s := store.StoredSession{Session: cluster.Session{ID: sid, UserID: u.ID, Kind: kind, Operator: operator, IP: ip,
		ExpiresAt: time.Now().UTC().Add(ttl)}}
	if secret != "" {
		s.RefreshHash = cluster.HashToken(secret)
	}
	if _, err := c.applyAudited(ctx, store.CmdCreateSession, "", store.CreateSession{Session: s}, audit...); err != nil {
		return tokenPair{}, err
	}
	return c.tokens(u, sid, operator, refresh, min(auth.AccessTokenTTL, ttl))
}

func (c *ControlPlane) tokens(u cluster.User, sid, operator, refresh string, ttl time.Duration) (tokenPair, error) {
	access, exp, err := c.signer.Sign(u.ID, sid, operator, ttl)
	if err != nil {
		return tokenPair{}, cluster.Errorf(cluster.ErrUnavailable, "the platform cannot issue tokens yet; retry shortly")
	}
	return tokenPair{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int(time.Until(exp).Seconds()), ExpiresAt: exp, User: u}, nil
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// handleRefresh exchanges a refresh token for a new access token and a new
// refresh token; the old refresh token stops working (and using it again
// ends the session).
func (c *ControlPlane) handleRefresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	sid, secret, ok := strings.Cut(req.RefreshToken, ".")
	if !ok || sid == "" || secret == "" || len(req.RefreshToken) > 200 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnauthorized, "invalid or expired refresh token; log in again"))
		return
	}
	next := randomSecret()
	res, err := c.apply(r.Context(), store.CmdRotateSession, "", store.RotateSession{
		ID: sid, OldHash: cluster.HashToken(secret), NewHash: cluster.HashToken(next), ExpiresAt: time.Now().UTC().Add(SessionTTL),
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	s := res.(cluster.Session)
	u, err := c.store.User(s.UserID)
	if err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnauthorized, "this account no longer exists"))
		return
	}
	pair, err := c.tokens(u.User, sid, "", sid+"."+next, auth.AccessTokenTTL)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pair)
}

// handleLogout ends the caller's session: its access and refresh tokens
// stop working.
func (c *ControlPlane) handleLogout(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p.Kind != auth.KindCustomer {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "logout ends a customer session; operator tokens are revoked with DELETE /api/cp/tokens/{id}"))
		return
	}
	if _, err := c.applyAudited(r.Context(), store.CmdDeleteSession, "", store.DeleteSession{ID: p.SessionID},
		auditEntry(r, auditLogout, p.ID, p.SessionID, "")); err != nil && !errors.Is(err, cluster.ErrNotFound) {
		cluster.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type resetRequest struct {
	Email string `json:"email"`
}

// handleResetRequest e-mails a password-reset link, if the account exists.
func (c *ControlPlane) handleResetRequest(w http.ResponseWriter, r *http.Request) {
	var req resetRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	addr, err := cluster.NormalizeEmail(req.Email)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	const msg = "if an account uses this address, a link to reset its password is on its way"
	ipKey := "reset-ip:" + clientIP(r)
	if ok, until := c.limits.blocked(ipKey, maxFailuresPerIP); ok {
		writeRateLimited(w, until, "too many reset requests from your address; retry later")
		return
	}
	c.limits.fail(ipKey)
	u, err := c.store.UserByEmail(addr)
	if err != nil {
		accepted(w, msg)
		return
	}
	tok, err := c.signer.SignLink(auth.AudienceReset, u.ID, passwordStamp(u.User), ResetLinkTTL)
	if err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "the platform cannot issue links yet; retry shortly"))
		return
	}
	c.mailer.mail("reset", u.Email, c.mailData(u.Email, c.cfg.BaseURL+"/api/cp/auth/password-reset/confirm?token="+url.QueryEscape(tok)))
	accepted(w, msg)
}

// passwordStamp ties a reset link to the password it replaces.
func passwordStamp(u cluster.User) string {
	return strconv.FormatInt(u.PasswordChangedAt.UnixNano(), 36)
}

type resetConfirm struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

var resetForm = template.Must(template.New("reset").Parse(`<!doctype html>
<meta charset="utf-8"><title>Choose a new password</title>
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Token}}<form method="post">
<input type="hidden" name="token" value="{{.Token}}">
<label>New password (at least 10 characters) <input type="password" name="password" autocomplete="new-password" required minlength="10"></label>
<button>Set password</button>
</form>{{end}}
`))

// handleResetForm is the page the e-mailed reset link opens: a form that
// posts the new password back to the same URL.
func (c *ControlPlane) handleResetForm(w http.ResponseWriter, r *http.Request) {
	writeResetPage(w, http.StatusOK, r.URL.Query().Get("token"), "")
}

func writeResetPage(w http.ResponseWriter, status int, token, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = resetForm.Execute(w, map[string]string{"Token": token, "Message": msg})
}

// handleResetConfirm sets a new password from a reset link (JSON from an
// API client, or the reset page's form); every session of the account
// ends.
func (c *ControlPlane) handleResetConfirm(w http.ResponseWriter, r *http.Request) {
	var req resetConfirm
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		r.Body = http.MaxBytesReader(w, r.Body, c.cfg.MaxBodyBytes)
		if err := r.ParseForm(); err != nil {
			writeResetPage(w, http.StatusBadRequest, "", "The form could not be read; open the link from the e-mail again.")
			return
		}
		req.Token, req.Password = r.PostForm.Get("token"), r.PostForm.Get("password")
		if err := c.resetPassword(r, req); err != nil {
			token := req.Token
			if !errors.Is(err, cluster.ErrInvalidInput) || strings.Contains(err.Error(), "link") {
				token = ""
			}
			writeResetPage(w, cluster.HTTPStatus(err), token, err.Error())
			return
		}
		writeResetPage(w, http.StatusOK, "", "Your password is changed. Log in with the new one.")
		return
	}
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := c.resetPassword(r, req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "password changed; log in with the new one"})
}

// resetPassword checks a reset link's token and sets the new password.
func (c *ControlPlane) resetPassword(r *http.Request, req resetConfirm) error {
	if err := cluster.ValidatePassword("password", req.Password); err != nil {
		return err
	}
	bad := cluster.Errorf(cluster.ErrInvalidInput, "the reset link is invalid, used or expired; ask for a new one")
	id, stamp, err := c.signer.VerifyLink(auth.AudienceReset, req.Token)
	if err != nil {
		return bad
	}
	u, err := c.store.User(id)
	if err != nil || passwordStamp(u.User) != stamp {
		return bad
	}
	hash := auth.HashPassword(req.Password)
	verified := true // the link proves the address
	if _, err := c.apply(r.Context(), store.CmdUpdateUser, "", store.UpdateUser{ID: id, PasswordHash: &hash, Verified: &verified}); err != nil {
		return err
	}
	c.audit(r, auditPasswordReset, id, id, "")
	c.mailer.mail("password_changed", u.Email, c.mailData(u.Email, c.cfg.BaseURL+"/"))
	return nil
}

type passwordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// handleChangePassword changes the caller's password and ends their other
// sessions.
func (c *ControlPlane) handleChangePassword(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	var req passwordChange
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := cluster.ValidatePassword("new_password", req.NewPassword); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if p.Impersonator != "" {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrForbidden, "an impersonation session cannot change the customer's password"))
		return
	}
	u, err := c.store.User(p.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if !auth.CheckPassword(u.PasswordHash, req.CurrentPassword) {
		c.limits.fail("account:" + u.Email)
		cluster.WriteError(w, cluster.Errorf(cluster.ErrForbidden, "current_password is wrong"))
		return
	}
	hash := auth.HashPassword(req.NewPassword)
	if _, err := c.apply(r.Context(), store.CmdUpdateUser, "", store.UpdateUser{ID: p.ID, PasswordHash: &hash, KeepSession: p.SessionID}); err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, auditPasswordChange, p.ID, p.ID, "")
	c.mailer.mail("password_changed", u.Email, c.mailData(u.Email, c.cfg.BaseURL+"/"))
	writeJSON(w, http.StatusOK, map[string]string{"message": "password changed; your other sessions have ended"})
}

// meView is the caller's own account.
type meView struct {
	cluster.User
	Tenants       int    `json:"tenants"`
	Impersonation string `json:"impersonated_by,omitempty"`
}

func (c *ControlPlane) handleMe(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p.Kind != auth.KindCustomer {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "/api/cp/me is a customer's own account; operators use /api/cp/users"))
		return
	}
	u, err := c.store.User(p.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	ts, err := c.store.TenantsOf(p.ID)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	live := 0
	for _, t := range ts {
		if t.State == cluster.TenantActive {
			live++
		}
	}
	writeJSON(w, http.StatusOK, meView{User: u.User, Tenants: live, Impersonation: p.Impersonator})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
