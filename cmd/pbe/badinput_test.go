package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServe_BadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, func(o *serveOptions) { o.maxBody = 64 << 10 })
	s.createTenant("acme")

	tenantBody := func(id string) string { return `{"id":` + jsonString(id) + `}` }
	cases := []struct {
		name       string
		method     string
		url        string
		body       string
		hdr        []string
		wantStatus int
		wantCode   string
	}{
		{"uppercase id", "POST", "/api/cp/tenants", tenantBody("Acme"), nil, 400, "invalid_tenant_id"},
		{"too short", "POST", "/api/cp/tenants", tenantBody("ab"), nil, 400, "invalid_tenant_id"},
		{"too long", "POST", "/api/cp/tenants", tenantBody(strings.Repeat("a", 64)), nil, 400, "invalid_tenant_id"},
		{"leading hyphen", "POST", "/api/cp/tenants", tenantBody("-acme"), nil, 400, "invalid_tenant_id"},
		{"trailing hyphen", "POST", "/api/cp/tenants", tenantBody("acme-"), nil, 400, "invalid_tenant_id"},
		{"underscore", "POST", "/api/cp/tenants", tenantBody("ac_me"), nil, 400, "invalid_tenant_id"},
		{"dot", "POST", "/api/cp/tenants", tenantBody("ac.me"), nil, 400, "invalid_tenant_id"},
		{"path traversal", "POST", "/api/cp/tenants", tenantBody("../x"), nil, 400, "invalid_tenant_id"},
		{"encoded traversal", "POST", "/api/cp/tenants", tenantBody("%2e%2e"), nil, 400, "invalid_tenant_id"},
		{"NUL byte", "POST", "/api/cp/tenants", `{"id":"ac\u0000me"}`, nil, 400, "invalid_tenant_id"},
		{"unicode", "POST", "/api/cp/tenants", tenantBody("acmé"), nil, 400, "invalid_tenant_id"},
		{"IDNA label", "POST", "/api/cp/tenants", tenantBody("xn--acme"), nil, 400, "invalid_tenant_id"},
		{"missing id", "POST", "/api/cp/tenants", `{}`, nil, 400, "invalid_tenant_id"},
		{"reserved www", "POST", "/api/cp/tenants", tenantBody("www"), nil, 400, "reserved_tenant_id"},
		{"reserved api", "POST", "/api/cp/tenants", tenantBody("api"), nil, 400, "reserved_tenant_id"},
		{"reserved admin", "POST", "/api/cp/tenants", tenantBody("admin"), nil, 400, "reserved_tenant_id"},
		{"reserved app", "POST", "/api/cp/tenants", tenantBody("app"), nil, 400, "reserved_tenant_id"},
		{"duplicate", "POST", "/api/cp/tenants", tenantBody("acme"), nil, 409, "tenant_exists"},
		{"malformed JSON", "POST", "/api/cp/tenants", `{"id": "x"`, nil, 400, "invalid_input"},
		{"not an object", "POST", "/api/cp/tenants", `["x"]`, nil, 400, "invalid_input"},
		{"wrong type", "POST", "/api/cp/tenants", `{"id": 7}`, nil, 400, "invalid_input"},
		{"unknown field", "POST", "/api/cp/tenants", `{"id":"newone","color":"red"}`, nil, 400, "invalid_input"},
		{"trailing data", "POST", "/api/cp/tenants", `{"id":"newone"} {"id":"other"}`, nil, 400, "invalid_input"},
		{"empty body", "POST", "/api/cp/tenants", ``, nil, 400, "invalid_input"},
		{"bad durability", "POST", "/api/cp/tenants", `{"id":"newone","durability":"maybe"}`, nil, 400, "invalid_input"},
		{"bad admin email", "POST", "/api/cp/tenants", `{"id":"newone","admin":{"email":"nope","password":"long-enough"}}`, nil, 400, "invalid_input"},
		{"short admin password", "POST", "/api/cp/tenants", `{"id":"newone","admin":{"email":"a@b.co","password":"short"}}`, nil, 400, "invalid_input"},
		{"wrong content type", "POST", "/api/cp/tenants", tenantBody("newone"), []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		// The platform API bounds its JSON bodies itself (1 MiB); --max-body
		// is for tenant requests, and an imported archive may be far larger.
		{"body over the limit", "POST", "/api/cp/tenants", `{"id":"newone","name":"` + strings.Repeat("x", 1100<<10) + `"}`, nil, 413, "body_too_large"},
		{"archive larger than --max-body reaches the import", "POST", "/api/cp/tenants/import?id=newone", strings.Repeat("x", 70<<10), []string{"Content-Type", "application/gzip"}, 400, "invalid_input"},
		{"unknown route", "GET", "/api/cp/nope", "", nil, 404, "not_found"},
		{"wrong method", "PUT", "/api/cp/tenants", tenantBody("newone"), nil, 405, "method_not_allowed"},
		{"wrong method on a tenant", "PUT", "/api/cp/tenants/acme", `{}`, nil, 405, "method_not_allowed"},
		{"invalid id in path", "GET", "/api/cp/tenants/ACME", "", nil, 400, "invalid_tenant_id"},
		{"encoded traversal in path", "GET", "/api/cp/tenants/%2e%2e", "", nil, 400, "invalid_tenant_id"},
		{"encoded slash in path", "DELETE", "/api/cp/tenants/..%2facme", "", nil, 400, "invalid_tenant_id"},
		{"NUL in path", "DELETE", "/api/cp/tenants/ac%00me", "", nil, 400, "invalid_tenant_id"},
		{"unknown tenant", "GET", "/api/cp/tenants/nosuch", "", nil, 404, "tenant_not_found"},
		{"restore a live tenant", "POST", "/api/cp/tenants/acme/restore", "", nil, 409, "tenant_not_deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if hdr == nil {
				hdr = []string{"Content-Type", "application/json"}
			}
			r := s.api(tc.method, tc.url, tc.body, hdr...)
			checkError(t, r, tc.wantStatus, tc.wantCode)
		})
	}

	hostCases := []struct {
		name, host string
		hdr        []string
		wantStatus int
		wantCode   string
	}{
		{"unknown tenant host", "nosuch.localhost", nil, 404, "tenant_not_found"},
		{"nested subdomain", "a.acme.localhost", nil, 404, "tenant_not_found"},
		{"foreign domain", "acme.example.com", nil, 404, "tenant_not_found"},
		{"invalid label", "ac_me.localhost", nil, 404, "tenant_not_found"},
		{"traversal header", "localhost", []string{"X-Tenant-ID", "../acme"}, 400, "invalid_tenant_id"},
		{"encoded traversal header", "localhost", []string{"X-Tenant-ID", "%2e%2e"}, 400, "invalid_tenant_id"},
		{"unknown tenant header", "localhost", []string{"X-Tenant-ID", "nosuch"}, 404, "tenant_not_found"},
		{"body over the gateway limit", "acme.localhost", []string{"X-Big", "1"}, 413, "body_too_large"},
	}
	for _, tc := range hostCases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if len(tc.hdr) > 0 && tc.hdr[0] == "X-Big" {
				body = strings.Repeat("x", 65<<10)
			}
			r := s.do("POST", "http://"+tc.host+":"+s.port+"/api/collections/posts/records", body,
				append([]string{"Host", tc.host + ":" + s.port}, tc.hdr...)...)
			checkError(t, r, tc.wantStatus, tc.wantCode)
		})
	}

	t.Run("nothing changed", func(t *testing.T) {
		var list struct {
			Items []struct{ ID string }
		}
		s.api("GET", "/api/cp/tenants?state=all", nil).json(t, &list)
		if len(list.Items) != 1 || list.Items[0].ID != "acme" {
			t.Fatalf("tenants: got %+v, want only acme", list.Items)
		}
		for _, sub := range []string{"tenants", filepath.Join("objects", "tenants")} {
			entries, err := os.ReadDir(filepath.Join(dir, sub))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "acme" {
					t.Errorf("unexpected entry %s in %s", e.Name(), sub)
				}
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
			t.Error("path traversal reached the filesystem")
		}
	})
}

func checkError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got status %d, want %d; body: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type: got %q, want JSON", ct)
	}
	var e struct{ Code, Message string }
	r.json(t, &e)
	if e.Code != code || e.Message == "" {
		t.Fatalf("got code %q message %q, want code %q and a message", e.Code, e.Message, code)
	}
}

func jsonString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			b = append(b, '\\', byte(r))
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}

var _ = http.StatusOK
