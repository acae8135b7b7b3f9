package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pbe/pbe/auth"
)

// openAPIOps reads the platform's OpenAPI document: method and path of
// every operation, with its x-pbe-access.
func openAPIOps(t *testing.T, s *testServer) map[string]string {
	t.Helper()
	r := s.do("GET", s.base()+"/api/cp/openapi.json", nil)
	mustStatus(t, r, http.StatusOK)
	var doc struct {
		OpenAPI string                                           `json:"openapi"`
		Paths   map[string]map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	ops := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			var access string
			_ = json.Unmarshal(op["x-pbe-access"], &access)
			ops[strings.ToUpper(method)+" "+path] = access
		}
	}
	return ops
}

// TestOpenAPI_MatchesTheRoutes checks the document both ways: every
// operation it lists is served (not the router's "no such route"), and
// every route the platform serves is in it.
func TestOpenAPI_MatchesTheRoutes(t *testing.T) {
	s, _ := startAccountsServer(t)
	ops := openAPIOps(t, s)
	if len(ops) < 40 {
		t.Fatalf("only %d operations documented", len(ops))
	}
	for op := range ops {
		method, path, _ := strings.Cut(op, " ")
		r := s.do(method, s.base()+strings.ReplaceAll(path, "{id}", "zz-unknown"), nil)
		if r.status == http.StatusMethodNotAllowed || strings.Contains(string(r.body), "no API route") {
			t.Errorf("%s is documented but not served: %d %s", op, r.status, r.body)
		}
	}
	// The reverse: routes the platform answers that the document lacks.
	served := []string{
		"POST /api/cp/auth/signup", "POST /api/cp/auth/login", "POST /api/cp/auth/refresh", "POST /api/cp/auth/logout",
		"GET /api/cp/auth/verify", "POST /api/cp/auth/password-reset", "POST /api/cp/tenants/{id}/sso",
		"GET /api/cp/tenants", "POST /api/cp/tenants", "GET /api/cp/tenants/{id}", "PATCH /api/cp/tenants/{id}",
		"DELETE /api/cp/tenants/{id}", "GET /api/cp/users", "GET /api/cp/audit", "POST /api/cp/tokens",
		"GET /api/cp/openapi.json",
	}
	for _, op := range served {
		if _, ok := ops[op]; !ok {
			t.Errorf("%s is served but not documented", op)
		}
	}
	for _, op := range []string{"GET /api/cp/nope", "PUT /api/cp/auth/login"} {
		method, path, _ := strings.Cut(op, " ")
		r := s.do(method, s.base()+path, nil)
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want the router's 404/405", op, r.status)
		}
	}
}

// TestSecurity_CustomerTokens checks, route by route from the OpenAPI
// document, that a customer's token opens no operator or internal
// endpoint, and that customer A reaches none of customer B's tenants.
func TestSecurity_CustomerTokens(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("POST", "/api/cp/tenants", map[string]string{"id": "bob-one"}), http.StatusCreated)
	ops := openAPIOps(t, s)
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	for _, op := range names {
		access := ops[op]
		method, path, _ := strings.Cut(op, " ")
		switch access {
		case "operator", "cluster":
			t.Run("customer token on "+op, func(t *testing.T) {
				r := alice.api(method, strings.ReplaceAll(path, "{id}", "bob-one"), map[string]any{})
				want := http.StatusForbidden
				if access == "cluster" {
					want = http.StatusUnauthorized
				}
				if r.status != want {
					t.Fatalf("%d %s, want %d", r.status, r.body, want)
				}
			})
		case "customer", "node":
			if !strings.HasPrefix(path, "/api/cp/tenants/{id}") {
				continue
			}
			t.Run("customer A with B's tenant on "+op, func(t *testing.T) {
				r := alice.api(method, strings.ReplaceAll(path, "{id}", "bob-one"), map[string]any{"name": "x"})
				if r.status != http.StatusNotFound {
					t.Fatalf("%d %s, want 404", r.status, r.body)
				}
			})
		}
	}
	// Bob's tenant is untouched.
	r := bob.api("GET", "/api/cp/tenants/bob-one", nil)
	mustStatus(t, r, http.StatusOK)
	var tn struct {
		Name, State string
	}
	r.json(t, &tn)
	if tn.Name != "" || tn.State != "active" {
		t.Fatalf("bob's tenant changed: %s", r.body)
	}
	// No answer carries a password hash.
	for _, path := range []string{"/api/cp/users", "/api/cp/users/" + alice.id, "/api/cp/audit"} {
		if b := string(s.api("GET", path, nil).body); strings.Contains(b, "argon2") || strings.Contains(b, "password_hash") {
			t.Errorf("%s leaks a password hash: %s", path, b)
		}
	}
	if b := string(alice.api("GET", "/api/cp/me", nil).body); strings.Contains(b, "argon2") || strings.Contains(b, "password") && !strings.Contains(b, "password_changed_at") {
		t.Errorf("/me leaks a password: %s", b)
	}
}

// TestSecurity_AccessTokens presents forged and stale access tokens to the
// live platform API; each must get 401 (403 for a suspended account).
// Tokens "signed with the cluster key" use the real key from the store, so
// only the claim under test is wrong.
func TestSecurity_AccessTokens(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	ring, err := s.p.store.SigningKeys()
	if err != nil || len(ring) == 0 {
		t.Fatalf("signing keys: %v", err)
	}
	key := ring[len(ring)-1]
	good := alice.access
	var claims auth.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(good, &claims); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	with := func(mut func(c *auth.Claims)) auth.Claims {
		c := claims
		c.Audience = append(jwt.ClaimStrings(nil), claims.Audience...)
		mut(&c)
		return c
	}
	sign := func(method jwt.SigningMethod, k any, kid string, c jwt.Claims) string {
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = kid
		out, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"sub":"`, `"sub":"x`, 1))) + "." + parts[2]

	// Accounts whose tokens must stop working.
	deleted := signup(t, s, mail, "deleted@example.com", true)
	mustStatus(t, s.api("DELETE", "/api/cp/users/"+deleted.id, nil), http.StatusNoContent)
	suspended := signup(t, s, mail, "suspended@example.com", true)
	mustStatus(t, s.api("PATCH", "/api/cp/users/"+suspended.id, map[string]any{"suspended": true}), http.StatusOK)
	loggedOut := signup(t, s, mail, "gone@example.com", true)
	mustStatus(t, loggedOut.api("POST", "/api/cp/auth/logout", nil), http.StatusNoContent)

	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"the real token (control)", good, http.StatusOK},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, key.ID, claims), http.StatusUnauthorized},
		{"RS256 by an attacker's key", sign(jwt.SigningMethodRS256, rsaKey, key.ID, claims), http.StatusUnauthorized},
		{"HS/RS confusion: HS256 keyed with a public key", sign(jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), key.ID, claims), http.StatusUnauthorized},
		{"wrong signing key", sign(jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef"), key.ID, claims), http.StatusUnauthorized},
		{"expired", sign(jwt.SigningMethodHS256, key.Secret, key.ID, with(func(c *auth.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
		})), http.StatusUnauthorized},
		{"not yet valid", sign(jwt.SigningMethodHS256, key.Secret, key.ID, with(func(c *auth.Claims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
		})), http.StatusUnauthorized},
		{"wrong audience", sign(jwt.SigningMethodHS256, key.Secret, key.ID, with(func(c *auth.Claims) {
			c.Audience = jwt.ClaimStrings{auth.AudienceReset}
		})), http.StatusUnauthorized},
		{"another user's id in a real session", sign(jwt.SigningMethodHS256, key.Secret, key.ID, with(func(c *auth.Claims) {
			c.Subject = deleted.id
		})), http.StatusUnauthorized},
		{"tampered payload", tampered, http.StatusUnauthorized},
		{"deleted user", deleted.access, http.StatusUnauthorized},
		{"suspended user", suspended.access, http.StatusForbidden},
		{"logged out", loggedOut.access, http.StatusUnauthorized},
		{"operator token prefix with garbage", "pbe_not-a-token", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do("GET", s.base()+"/api/cp/me", nil, "Authorization", "Bearer "+tc.token)
			if r.status != tc.want {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.want)
			}
		})
	}
	t.Run("refresh token reused after logout", func(t *testing.T) {
		r := s.do("POST", s.base()+"/api/cp/auth/refresh", map[string]string{"refresh_token": loggedOut.refresh})
		mustStatus(t, r, http.StatusUnauthorized)
	})
	t.Run("password hash is argon2id in the store and never in an answer", func(t *testing.T) {
		u, err := s.p.store.User(alice.id)
		if err != nil || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Fatalf("stored hash: %q %v", u.PasswordHash, err)
		}
		for _, r := range []response{alice.api("GET", "/api/cp/me", nil), s.api("GET", "/api/cp/users/"+alice.id, nil), s.api("GET", "/api/cp/users", nil)} {
			if strings.Contains(string(r.body), u.PasswordHash) || strings.Contains(string(r.body), "argon2") {
				t.Fatalf("an answer carries the hash: %s", r.body)
			}
		}
	})
}
