package main

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email/smtptest"
	"github.com/pbe/pbe/internal/s3test"
)

// TestEgress_TenantMail: a tenant's mail goes only to an SMTP server at a
// public address (or one --egress-allow admits), and never through the
// node's sendmail.
func TestEgress_TenantMail(t *testing.T) {
	t.Parallel()
	mail := smtptest.Start(t)
	host, portStr, _ := net.SplitHostPort(mail.Addr())
	port, _ := strconv.Atoi(portStr)
	testEmail := func(s *testServer, tok string) response {
		return s.do("POST", s.tenantURL("acme", "/api/settings/test/email"),
			map[string]string{"email": "someone@example.com", "template": "verification"}, "Authorization", tok)
	}
	setSMTP := func(s *testServer, tok string) {
		mustStatus(t, s.do("PATCH", s.tenantURL("acme", "/api/settings"), map[string]any{
			"smtp": map[string]any{"enabled": true, "host": host, "port": port},
		}, "Authorization", tok), http.StatusOK)
	}

	t.Run("refused by default", func(t *testing.T) {
		s := startServer(t, t.TempDir(), nil)
		tok := s.createTenant("acme")
		if r := testEmail(s, tok); r.status != http.StatusBadRequest {
			t.Fatalf("without an SMTP server: got %d %s, want 400 (no sendmail)", r.status, r.body)
		}
		setSMTP(s, tok)
		if r := testEmail(s, tok); r.status != http.StatusBadRequest {
			t.Fatalf("SMTP server on loopback: got %d %s, want 400", r.status, r.body)
		}
		if n := len(mail.Messages()); n != 0 {
			t.Fatalf("the SMTP server on loopback received %d messages", n)
		}
	})
	t.Run("delivered where --egress-allow admits", func(t *testing.T) {
		s := startServer(t, t.TempDir(), func(o *serveOptions) { o.egressAllow = "127.0.0.0/8" })
		tok := s.createTenant("acme")
		setSMTP(s, tok)
		mustStatus(t, testEmail(s, tok), http.StatusNoContent)
		mail.WaitFor(t, "someone@example.com", 10*time.Second)
	})
	// A tenant hook that points the mail client at another server after
	// the check would reach the loopback server: the check runs last.
	t.Run("a hook cannot redirect checked mail", func(t *testing.T) {
		s := startServer(t, t.TempDir(), func(o *serveOptions) { o.egressAllow = "127.0.0.2/32" })
		tok := s.createTenant("acme")
		mustStatus(t, s.do("PATCH", s.tenantURL("acme", "/api/settings"), map[string]any{
			"smtp": map[string]any{"enabled": true, "host": "127.0.0.2", "port": port},
		}, "Authorization", tok), http.StatusOK)
		mustStatus(t, s.do("POST", s.tenantURL("acme", "/api/collections/_hooks/records"), map[string]any{
			"name": "redirect.pb.js", "enabled": true, "kind": "hook",
			"code": `onMailerSend((e) => { e.mailer.host = "127.0.0.1"; e.next() })`,
		}, "Authorization", tok), http.StatusOK)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(string(s.do("GET", s.tenantURL("acme", "/api/pbe/hooks"), nil, "Authorization", tok).body), `"loaded":true`) {
			if time.Now().After(deadline) {
				t.Fatal("the hook did not load")
			}
			time.Sleep(20 * time.Millisecond)
		}
		before := len(mail.Messages())
		if r := testEmail(s, tok); r.status != http.StatusBadRequest {
			t.Fatalf("test e-mail with the redirecting hook: got %d %s, want 400", r.status, r.body)
		}
		if n := len(mail.Messages()) - before; n != 0 {
			t.Fatalf("the SMTP server on loopback received %d messages", n)
		}
	})
}

// TestEgress_TenantS3: PocketBase connects to a tenant's own S3 storage
// (files, backups) only at a public address, unless --egress-allow admits
// it. pbe serve guards the process's default HTTP client, so this runs the
// binary.
func TestEgress_TenantS3(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the pbe binary")
	}
	store := s3test.Start(t)
	bucket := store.Bucket(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  int
	}{
		{"refused by default", nil, http.StatusBadRequest},
		{"allowed by --egress-allow", []string{"--egress-allow", "127.0.0.0/8"}, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, port := t.TempDir(), freePort(t)
			p := launchProc(t, dir, port, tc.flags, []string{"PBE_ADMIN_TOKEN="})
			p.waitReady()
			s := p.harness(t)
			tok := s.createTenant("acme")
			mustStatus(t, s.do("PATCH", s.tenantURL("acme", "/api/settings"), map[string]any{
				"s3": map[string]any{
					"enabled": true, "bucket": bucket, "region": s3test.Region, "endpoint": store.Endpoint,
					"accessKey": s3test.AccessKey, "secret": s3test.SecretKey, "forcePathStyle": true,
				},
			}, "Authorization", tok), http.StatusOK)
			r := s.do("POST", s.tenantURL("acme", "/api/settings/test/s3"), map[string]string{"filesystem": "storage"}, "Authorization", tok)
			if r.status != tc.want {
				t.Fatalf("S3 storage at %s: got %d %s, want %d", store.Endpoint, r.status, r.body, tc.want)
			}
		})
	}
}
