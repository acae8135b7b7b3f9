package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorder is the tenant side of the gateway: it records what reached it.
type recorder struct {
	id     string
	header http.Header
}

func (r *recorder) ServeTenant(w http.ResponseWriter, req *http.Request, id string) {
	r.id, r.header = id, req.Header.Clone()
	_, _ = io.Copy(io.Discard, req.Body)
	w.WriteHeader(http.StatusTeapot)
}

func newGateway(t *testing.T, allowHeader bool) (*Gateway, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg := DefaultConfig()
	cfg.Domain = "example.com"
	cfg.AllowTenantHeader = allowHeader
	cfg.MaxBodyBytes = 1024
	cfg.Logger = slog.New(slog.DiscardHandler)
	platform := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	g, err := New(cfg, platform, rec)
	if err != nil {
		t.Fatal(err)
	}
	return g, rec
}

func TestGateway_Resolve(t *testing.T) {
	for _, tc := range []struct {
		name       string
		host       string
		hdr        string
		allowHdr   bool
		wantStatus int
		wantTenant string
		wantCode   string
	}{
		{"tenant host", "acme.example.com", "", true, 418, "acme", ""},
		{"tenant host with port", "acme.example.com:8090", "", true, 418, "acme", ""},
		{"upper case and trailing dot", "ACME.Example.COM.", "", true, 418, "acme", ""},
		{"base domain", "example.com", "", true, 202, "", ""},
		{"ip address", "127.0.0.1:8090", "", true, 202, "", ""},
		{"ipv6 address", "[::1]:8090", "", true, 202, "", ""},
		{"header on base domain", "example.com", "acme", true, 418, "acme", ""},
		{"header disabled", "example.com", "acme", false, 400, "", "invalid_input"},
		{"header with traversal", "example.com", "../acme", true, 400, "", "invalid_tenant_id"},
		{"nested subdomain", "a.acme.example.com", "", true, 404, "", "tenant_not_found"},
		{"other domain", "acme.other.com", "", true, 404, "", "tenant_not_found"},
		{"suffix trick", "acmeexample.com", "", true, 404, "", "tenant_not_found"},
		{"invalid label", "ac_me.example.com", "", true, 404, "", "tenant_not_found"},
		{"too short label", "ab.example.com", "", true, 404, "", "tenant_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, rec := newGateway(t, tc.allowHdr)
			req := httptest.NewRequest("GET", "/api/health", nil)
			req.Host = tc.host
			if tc.hdr != "" {
				req.Header.Set(TenantHeader, tc.hdr)
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, req)
			if w.Code != tc.wantStatus {
				t.Fatalf("got status %d, want %d (%s)", w.Code, tc.wantStatus, w.Body)
			}
			if rec.id != tc.wantTenant {
				t.Fatalf("tenant: got %q, want %q", rec.id, tc.wantTenant)
			}
			if tc.wantCode != "" {
				var e struct{ Code string }
				_ = json.Unmarshal(w.Body.Bytes(), &e)
				if e.Code != tc.wantCode {
					t.Fatalf("code: got %q, want %q", e.Code, tc.wantCode)
				}
			}
		})
	}
}

func TestGateway_StripsInternalHeaders(t *testing.T) {
	g, rec := newGateway(t, true)
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "acme.example.com"
	req.Header.Set("X-Pbe-Node", "forged")
	req.Header.Set("X-Pbe-Epoch", "99")
	req.Header.Set("X-Other", "kept")
	g.ServeHTTP(httptest.NewRecorder(), req)
	if rec.header.Get("X-Pbe-Node") != "" || rec.header.Get("X-Pbe-Epoch") != "" {
		t.Fatalf("internal headers reached the tenant: %v", rec.header)
	}
	if rec.header.Get("X-Other") != "kept" {
		t.Fatal("an ordinary header was dropped")
	}
}

func TestGateway_BodyLimit(t *testing.T) {
	g, rec := newGateway(t, true)
	req := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 2048)))
	req.Host = "acme.example.com"
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge || rec.id != "" {
		t.Fatalf("got %d (tenant %q), want 413 before reaching the tenant", w.Code, rec.id)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, d := range []string{"", "http://example.com", "example.com:80", ".example.com"} {
		cfg := DefaultConfig()
		cfg.Domain = d
		if cfg.Validate() == nil {
			t.Errorf("domain %q accepted", d)
		}
	}
}
