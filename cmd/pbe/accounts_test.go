package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email/smtptest"
)

// customer is a signed-up customer driven through the platform API.
type customer struct {
	s       *testServer
	email   string
	pass    string
	access  string
	refresh string
	id      string
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+`)

// linkIn returns the first link of an e-mail's text part that contains
// marker.
func linkIn(t *testing.T, text, marker string) string {
	t.Helper()
	for _, l := range linkPattern.FindAllString(text, -1) {
		if strings.Contains(l, marker) {
			return l
		}
	}
	t.Fatalf("no link with %q in e-mail:\n%s", marker, text)
	return ""
}

// startAccountsMail starts the SMTP server the platform's e-mails go to.
func startAccountsMail(t *testing.T) *smtptest.Server { return smtptest.Start(t) }

// startAccountsServer starts a platform that sends its e-mails to a real
// SMTP server in the test process.
func startAccountsServer(t *testing.T) (*testServer, *smtptest.Server) {
	t.Helper()
	mail := startAccountsMail(t)
	s := startServer(t, t.TempDir(), func(o *serveOptions) {
		o.smtp = mail.URL()
	})
	return s, mail
}

// signup signs a customer up and verifies their address from the e-mail.
func signup(t *testing.T, s *testServer, mail *smtptest.Server, addr string, verify bool) *customer {
	t.Helper()
	c := &customer{s: s, email: addr, pass: "pass-" + addr}
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/signup", map[string]string{"email": addr, "password": c.pass}), http.StatusAccepted)
	msg := mail.WaitFor(t, addr, 30*time.Second)
	link := linkIn(t, msg.Text, "/api/cp/auth/verify")
	if verify {
		u, _ := url.Parse(link)
		r := s.do("GET", s.base()+u.RequestURI(), nil)
		mustStatus(t, r, http.StatusOK)
	}
	c.login(t)
	return c
}

func (c *customer) login(t *testing.T) {
	t.Helper()
	r := c.s.do("POST", c.s.base()+"/api/cp/auth/login", map[string]string{"email": c.email, "password": c.pass})
	mustStatus(t, r, http.StatusOK)
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		User         struct{ ID string }
	}
	r.json(t, &out)
	c.access, c.refresh, c.id = out.AccessToken, out.RefreshToken, out.User.ID
}

// api calls the platform API as the customer.
func (c *customer) api(method, path string, body any) response {
	c.s.t.Helper()
	return c.s.do(method, c.s.base()+path, body, "Authorization", "Bearer "+c.access)
}

func TestAccounts_SignupVerifyAndTenantsWithinQuota(t *testing.T) {
	s, mail := startAccountsServer(t)

	alice := signup(t, s, mail, "alice@example.com", false)
	// Unverified: can log in, cannot create tenants.
	r := alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-one"})
	mustStatus(t, r, http.StatusForbidden)
	if !strings.Contains(string(r.body), "verify your e-mail") {
		t.Fatalf("unverified create: %s", r.body)
	}
	// The verification link from the e-mail.
	msg := mail.Messages()[0]
	link, _ := url.Parse(linkIn(t, msg.Text, "/api/cp/auth/verify"))
	mustStatus(t, s.do("GET", s.base()+link.RequestURI(), nil), http.StatusOK)
	if !strings.Contains(msg.HTML, "/api/cp/auth/verify?token=") {
		t.Errorf("the HTML part lacks the link:\n%s", msg.HTML)
	}

	// Signing up again with a taken address answers the same, and mails
	// the owner instead of creating anything.
	again := s.do("POST", s.base()+"/api/cp/auth/signup", map[string]string{"email": "alice@example.com", "password": "another-password"})
	fresh := s.do("POST", s.base()+"/api/cp/auth/signup", map[string]string{"email": "carol@example.com", "password": "another-password"})
	if again.status != fresh.status || string(again.body) != string(fresh.body) {
		t.Fatalf("sign-up reveals an existing account: %d %s vs %d %s", again.status, again.body, fresh.status, fresh.body)
	}
	if m := mail.WaitFor(t, "alice@example.com", 30*time.Second); !strings.Contains(strings.ToLower(m.Subject+m.Text), "sign") {
		t.Logf("second e-mail to alice: %s", m.Subject)
	}

	// Verified: create up to the quota.
	var quota struct {
		Quota struct {
			MaxTenants int `json:"max_tenants"`
		}
	}
	mustStatus(t, s.api("PATCH", "/api/cp/users/"+alice.id, map[string]any{"quota": map[string]any{"max_tenants": 2}}), http.StatusOK)
	r = alice.api("GET", "/api/cp/me", nil)
	mustStatus(t, r, http.StatusOK)
	r.json(t, &quota)
	if quota.Quota.MaxTenants != 2 {
		t.Fatalf("me: %s", r.body)
	}
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "alice-one",
		"admin": map[string]string{"email": "admin@alice.test", "password": "password-alice"}}), http.StatusCreated)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-two"}), http.StatusCreated)
	r = alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-three"})
	mustStatus(t, r, http.StatusForbidden)
	var qe struct {
		Code string
		Data struct{ Current, Max int }
	}
	r.json(t, &qe)
	if qe.Code != "quota_exceeded" || qe.Data.Current != 2 || qe.Data.Max != 2 {
		t.Fatalf("over quota: %s", r.body)
	}
	// The tenant works, at its own host.
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusOK)

	// Rename and list.
	mustStatus(t, alice.api("PATCH", "/api/cp/tenants/alice-two", map[string]string{"name": "Second"}), http.StatusOK)
	r = alice.api("GET", "/api/cp/tenants", nil)
	mustStatus(t, r, http.StatusOK)
	var list struct {
		Items []struct{ ID, Name, Owner string }
	}
	r.json(t, &list)
	if len(list.Items) != 2 || list.Items[1].Name != "Second" || list.Items[0].Owner != alice.id {
		t.Fatalf("alice's tenants: %s", r.body)
	}

	// Bob sees none of it: another's tenant is "not found", never 403.
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("POST", "/api/cp/tenants", map[string]string{"id": "bob-one"}), http.StatusCreated)
	r = bob.api("GET", "/api/cp/tenants", nil)
	r.json(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != "bob-one" {
		t.Fatalf("bob's list: %s", r.body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/cp/tenants/alice-one"},
		{"PATCH", "/api/cp/tenants/alice-one"},
		{"DELETE", "/api/cp/tenants/alice-one"},
		{"POST", "/api/cp/tenants/alice-one/sso"},
	} {
		r := bob.api(c.method, c.path, map[string]string{"name": "mine now"})
		if r.status != http.StatusNotFound {
			t.Errorf("bob %s %s: %d %s, want 404", c.method, c.path, r.status, r.body)
		}
	}
	// Customers cannot set what the operator sets.
	mustStatus(t, alice.api("PATCH", "/api/cp/tenants/alice-one", map[string]any{"suspended": false}), http.StatusForbidden)

	// Delete frees a slot.
	mustStatus(t, alice.api("DELETE", "/api/cp/tenants/alice-two", nil), http.StatusOK)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-three"}), http.StatusCreated)
}

func TestAccounts_SessionsRefreshLogoutAndPasswords(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)

	// Refresh rotates the refresh token.
	r := s.do("POST", s.base()+"/api/cp/auth/refresh", map[string]string{"refresh_token": alice.refresh})
	mustStatus(t, r, http.StatusOK)
	var pair struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	r.json(t, &pair)
	if pair.RefreshToken == alice.refresh {
		t.Fatal("refresh did not rotate the refresh token")
	}
	// Using the old one again ends the session: the new one dies too.
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/refresh", map[string]string{"refresh_token": alice.refresh}), http.StatusUnauthorized)
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/refresh", map[string]string{"refresh_token": pair.RefreshToken}), http.StatusUnauthorized)
	mustStatus(t, s.do("GET", s.base()+"/api/cp/me", nil, "Authorization", "Bearer "+pair.AccessToken), http.StatusUnauthorized)

	// Logout ends the session: its access and refresh tokens stop working.
	alice.login(t)
	mustStatus(t, alice.api("POST", "/api/cp/auth/logout", nil), http.StatusNoContent)
	mustStatus(t, alice.api("GET", "/api/cp/me", nil), http.StatusUnauthorized)
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/refresh", map[string]string{"refresh_token": alice.refresh}), http.StatusUnauthorized)

	// Change password: the other sessions end, this one lives.
	alice.login(t)
	other := *alice
	other.login(t)
	alice.login(t)
	mustStatus(t, alice.api("POST", "/api/cp/auth/password", map[string]string{"current_password": "wrong-password", "new_password": "a-new-password"}), http.StatusForbidden)
	mustStatus(t, alice.api("POST", "/api/cp/auth/password", map[string]string{"current_password": alice.pass, "new_password": "a-new-password"}), http.StatusOK)
	mustStatus(t, alice.api("GET", "/api/cp/me", nil), http.StatusOK)
	mustStatus(t, other.api("GET", "/api/cp/me", nil), http.StatusUnauthorized)
	alice.pass = "a-new-password"

	// Reset by e-mail: same answer for unknown addresses; the link sets a
	// new password once and ends every session.
	known := s.do("POST", s.base()+"/api/cp/auth/password-reset", map[string]string{"email": "alice@example.com"})
	unknown := s.do("POST", s.base()+"/api/cp/auth/password-reset", map[string]string{"email": "nobody@example.com"})
	if known.status != http.StatusAccepted || string(known.body) != string(unknown.body) || known.status != unknown.status {
		t.Fatalf("reset reveals accounts: %d %s / %d %s", known.status, known.body, unknown.status, unknown.body)
	}
	var resetMail string
	deadline := time.Now().Add(30 * time.Second)
	for resetMail == "" && time.Now().Before(deadline) {
		for _, m := range mail.Messages() {
			if strings.Contains(m.Text, "password-reset/confirm?token=") && containsAddr(m.To, "alice@example.com") {
				resetMail = m.Text
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	link, _ := url.Parse(linkIn(t, resetMail, "password-reset/confirm?token="))
	token := link.Query().Get("token")
	// The link opens a form in the browser.
	form := s.do("GET", s.base()+link.RequestURI(), nil)
	mustStatus(t, form, http.StatusOK)
	if !strings.Contains(string(form.body), `name="password"`) || !strings.Contains(string(form.body), token) {
		t.Fatalf("reset page: %s", form.body)
	}
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/password-reset/confirm", map[string]string{"token": token, "password": "short"}), http.StatusBadRequest)
	// The form posts the new password (as a browser would).
	posted := s.do("POST", s.base()+link.RequestURI(), url.Values{"token": {token}, "password": {"reset-password-1"}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded")
	mustStatus(t, posted, http.StatusOK)
	if !strings.Contains(string(posted.body), "password is changed") {
		t.Fatalf("reset form answer: %s", posted.body)
	}
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/password-reset/confirm", map[string]string{"token": token, "password": "reset-password-2"}), http.StatusBadRequest)
	mustStatus(t, alice.api("GET", "/api/cp/me", nil), http.StatusUnauthorized)
	alice.pass = "reset-password-1"
	alice.login(t)
	if strings.Contains(string(alice.api("GET", "/api/cp/me", nil).body), "hash") {
		t.Fatal("an answer mentions a password hash")
	}
}

func containsAddr(list []string, addr string) bool {
	for _, a := range list {
		if strings.Contains(a, addr) {
			return true
		}
	}
	return false
}

func TestAccounts_LoginDoesNotRevealAccountsAndIsRateLimited(t *testing.T) {
	s, mail := startAccountsServer(t)
	signup(t, s, mail, "alice@example.com", true)
	wrong := s.do("POST", s.base()+"/api/cp/auth/login", map[string]string{"email": "alice@example.com", "password": "wrong-password"})
	none := s.do("POST", s.base()+"/api/cp/auth/login", map[string]string{"email": "nobody@example.com", "password": "wrong-password"})
	if wrong.status != http.StatusUnauthorized || wrong.status != none.status || string(wrong.body) != string(none.body) {
		t.Fatalf("login reveals accounts: %d %s / %d %s", wrong.status, wrong.body, none.status, none.body)
	}
	for i := 0; i < 10; i++ {
		r := s.do("POST", s.base()+"/api/cp/auth/login", map[string]string{"email": "alice@example.com", "password": "wrong-password"})
		if r.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			// Even the right password is refused while limited.
			mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/login", map[string]string{"email": "alice@example.com", "password": "pass-alice@example.com"}), http.StatusTooManyRequests)
			return
		}
		mustStatus(t, r, http.StatusUnauthorized)
	}
	t.Fatal("failed logins were never rate limited")
}

func TestAccounts_OperatorTools(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "alice-one",
		"admin": map[string]string{"email": "admin@alice-one.test", "password": "password-alice-one"}}), http.StatusCreated)

	// Search.
	r := s.api("GET", "/api/cp/users?q=alice", nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), alice.id) || strings.Contains(string(r.body), "argon2") {
		t.Fatalf("user search: %s", r.body)
	}
	r = s.api("GET", "/api/cp/users/"+alice.id, nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"alice-one"`) {
		t.Fatalf("user detail lacks their tenant: %s", r.body)
	}

	// Quota requests: one pending per kind; approve applies at once and
	// e-mails the customer; reject needs a reason.
	r = alice.api("POST", "/api/cp/quota-requests", map[string]any{"kind": "max_tenants", "value": 10, "reason": "launching"})
	mustStatus(t, r, http.StatusCreated)
	var qr struct{ ID string }
	r.json(t, &qr)
	mustStatus(t, alice.api("POST", "/api/cp/quota-requests", map[string]any{"kind": "max_tenants", "value": 11, "reason": "more"}), http.StatusConflict)
	mustStatus(t, alice.api("POST", "/api/cp/quota-requests/"+qr.ID+"/approve", nil), http.StatusForbidden)
	mustStatus(t, s.api("POST", "/api/cp/quota-requests/"+qr.ID+"/approve", nil), http.StatusOK)
	r = alice.api("GET", "/api/cp/me", nil)
	if !strings.Contains(string(r.body), `"max_tenants":10`) {
		t.Fatalf("approved quota not applied: %s", r.body)
	}
	waitMail(t, mail, "alice@example.com", "approved")
	r = alice.api("POST", "/api/cp/quota-requests", map[string]any{"kind": "requests_per_day", "value": 1000000, "reason": "traffic"})
	mustStatus(t, r, http.StatusCreated)
	r.json(t, &qr)
	mustStatus(t, s.api("POST", "/api/cp/quota-requests/"+qr.ID+"/reject", nil), http.StatusBadRequest)
	mustStatus(t, s.api("POST", "/api/cp/quota-requests/"+qr.ID+"/reject", map[string]string{"reason": "not on this plan"}), http.StatusOK)
	waitMail(t, mail, "alice@example.com", "not on this plan")

	// Suspension: the customer's tenants answer 403, their logins stop;
	// lifting it restores both.
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusOK)
	mustStatus(t, s.api("PATCH", "/api/cp/users/"+alice.id, map[string]any{"suspended": true}), http.StatusOK)
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusForbidden)
	mustStatus(t, alice.api("GET", "/api/cp/me", nil), http.StatusForbidden)
	mustStatus(t, s.do("POST", s.base()+"/api/cp/auth/login", map[string]string{"email": alice.email, "password": alice.pass}), http.StatusForbidden)
	mustStatus(t, s.api("PATCH", "/api/cp/users/"+alice.id, map[string]any{"suspended": false}), http.StatusOK)
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusOK)
	mustStatus(t, alice.api("GET", "/api/cp/me", nil), http.StatusOK)
	// A single tenant.
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/alice-one", map[string]any{"suspended": true}), http.StatusOK)
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusForbidden)
	mustStatus(t, s.api("PATCH", "/api/cp/tenants/alice-one", map[string]any{"suspended": false}), http.StatusOK)
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/api/health"), nil), http.StatusOK)

	// Impersonation: acts as the customer, is audited as impersonation,
	// and can be revoked.
	r = s.api("POST", "/api/cp/users/"+alice.id+"/impersonate", map[string]int{"ttl": 600})
	mustStatus(t, r, http.StatusCreated)
	var imp struct {
		AccessToken string `json:"access_token"`
		SessionID   string `json:"session_id"`
	}
	r.json(t, &imp)
	as := &customer{s: s, access: imp.AccessToken}
	r = as.api("GET", "/api/cp/tenants", nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), "alice-one") {
		t.Fatalf("impersonated list: %s", r.body)
	}
	mustStatus(t, as.api("PATCH", "/api/cp/tenants/alice-one", map[string]string{"name": "renamed by support"}), http.StatusOK)
	r = s.api("GET", "/api/cp/audit?user="+alice.id, nil)
	mustStatus(t, r, http.StatusOK)
	var audit struct {
		Items []struct{ Action, Actor, Impersonator, IP string }
	}
	r.json(t, &audit)
	found := false
	for _, e := range audit.Items {
		if e.Action == "impersonate" && strings.HasPrefix(e.Actor, "operator:") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no impersonation in the audit log: %s", r.body)
	}
	mustStatus(t, s.api("DELETE", "/api/cp/sessions/"+imp.SessionID, nil), http.StatusNoContent)
	mustStatus(t, as.api("GET", "/api/cp/tenants", nil), http.StatusUnauthorized)

	// A customer sees only their own audit entries.
	bob := signup(t, s, mail, "bob@example.com", true)
	r = bob.api("GET", "/api/cp/audit", nil)
	mustStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.body), alice.id) {
		t.Fatalf("bob sees alice's audit entries: %s", r.body)
	}
	r = s.api("GET", "/api/cp/audit?action=login", nil)
	if !strings.Contains(string(r.body), alice.id) || !strings.Contains(string(r.body), bob.id) {
		t.Fatalf("operator audit of logins: %s", r.body)
	}

	// Operator tokens: created (shown once), listed without secrets,
	// revoked.
	r = s.api("POST", "/api/cp/tokens", map[string]string{"name": "ci"})
	mustStatus(t, r, http.StatusCreated)
	var tok struct{ ID, Token string }
	r.json(t, &tok)
	mustStatus(t, s.do("GET", s.base()+"/api/cp/users", nil, "Authorization", "Bearer "+tok.Token), http.StatusOK)
	r = s.api("GET", "/api/cp/tokens", nil)
	if strings.Contains(string(r.body), tok.Token) || !strings.Contains(string(r.body), tok.ID) {
		t.Fatalf("token list: %s", r.body)
	}
	mustStatus(t, s.api("DELETE", "/api/cp/tokens/"+tok.ID, nil), http.StatusNoContent)
	mustStatus(t, s.do("GET", s.base()+"/api/cp/users", nil, "Authorization", "Bearer "+tok.Token), http.StatusUnauthorized)

	// A deleted user's token stops working.
	carol := signup(t, s, mail, "carol@example.com", true)
	mustStatus(t, s.api("DELETE", "/api/cp/users/"+carol.id, nil), http.StatusNoContent)
	mustStatus(t, carol.api("GET", "/api/cp/me", nil), http.StatusUnauthorized)
}

// waitMail waits for an e-mail to addr whose text contains want.
func waitMail(t *testing.T, mail *smtptest.Server, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range mail.Messages() {
			if containsAddr(m.To, addr) && strings.Contains(m.Text, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no e-mail to %s containing %q", addr, want)
}
