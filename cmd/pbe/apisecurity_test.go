package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
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
