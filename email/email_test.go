package email

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email/smtptest"
)

// selfSigned returns a TLS config with a fresh certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

const longLink = "http://localhost:8090/api/cp/auth/verify?token=eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiJ1MSIsImF1ZCI6WyJwYmUtdmVyaWZ5Il19.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2gtdG8td3JhcA"

func render(t *testing.T, name string) Message {
	t.Helper()
	tm, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tm.Render(name, "alice@example.com", Data{Link: longLink})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSMTP_DeliversBothPartsWithTheLinkIntact(t *testing.T) {
	srv := smtptest.StartWith(t, smtptest.Options{Username: "mailer", Password: "p@ss/word", TLS: selfSigned(t)})
	cfg, err := ParseSMTPURL("smtp://mailer:p%40ss%2Fword@" + srv.Addr() + "?insecure_skip_verify=true")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSMTPSender(cfg, "pbe <noreply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	m := render(t, "verify")
	m.Subject = "Vérifiez votre adresse"
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := srv.WaitFor(t, "alice@example.com", 10*time.Second)
	if got.From != "noreply@example.com" || got.Subject != "Vérifiez votre adresse" {
		t.Fatalf("envelope/subject: %q %q", got.From, got.Subject)
	}
	if !strings.Contains(got.Text, longLink) || !strings.Contains(got.HTML, longLink) {
		t.Fatalf("the link did not survive:\ntext: %s\nhtml: %s", got.Text, got.HTML)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Raw))
	if err != nil || msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
		t.Fatalf("headers: %v %v", msg.Header, err)
	}
}

func TestSMTP_Refusals(t *testing.T) {
	tlsConf := selfSigned(t)
	withTLS := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right", TLS: tlsConf})
	plain := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right"})
	implicit := smtptest.StartWith(t, smtptest.Options{TLS: tlsConf, Implicit: true})
	send := func(raw string, m Message) error {
		cfg, err := ParseSMTPURL(raw)
		if err != nil {
			return err
		}
		s, err := NewSMTPSender(cfg, "noreply@example.com")
		if err != nil {
			return err
		}
		return s.Send(context.Background(), m)
	}
	ok := Message{To: "a@example.com", Subject: "hi", Text: "hello"}
	if err := send("smtp://u:wrong@"+withTLS.Addr()+"?insecure_skip_verify=true", ok); err == nil {
		t.Error("a wrong password was accepted")
	}
	if err := send("smtp://u:right@"+plain.Addr(), ok); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("STARTTLS required but missing: %v", err)
	}
	if err := send("smtps://"+implicit.Addr()+"?insecure_skip_verify=true", ok); err != nil {
		t.Errorf("implicit TLS: %v", err)
	}
	if err := send("smtps://"+implicit.Addr(), ok); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
	for _, bad := range []Message{
		{To: "a@example.com\r\nBcc: victim@example.com", Subject: "hi", Text: "x"},
		{To: "a@example.com", Subject: "hi\r\nBcc: victim@example.com", Text: "x"},
	} {
		if err := send("smtp://u:right@"+plain.Addr()+"?tls=none", bad); err == nil {
			t.Errorf("header injection accepted: %q / %q", bad.To, bad.Subject)
		}
	}
	if len(implicit.Messages()) != 1 || len(plain.Messages()) != 0 {
		t.Fatalf("messages: implicit %d, plain %d", len(implicit.Messages()), len(plain.Messages()))
	}
}

func TestParseSMTPURL(t *testing.T) {
	tests := []struct {
		raw     string
		want    SMTPConfig
		wantErr string
	}{
		{raw: "smtp://mail.example.com", want: SMTPConfig{Host: "mail.example.com", Port: "587", TLS: TLSStartTLS}},
		{raw: "smtps://u:p%3Aw@mail.example.com", want: SMTPConfig{Host: "mail.example.com", Port: "465", TLS: TLSImplicit, Username: "u", Password: "p:w"}},
		{raw: "smtp://127.0.0.1:2525?tls=none", want: SMTPConfig{Host: "127.0.0.1", Port: "2525", TLS: TLSNone}},
		{raw: "smtp://mail.example.com:25?tls=opportunistic", want: SMTPConfig{Host: "mail.example.com", Port: "25", TLS: TLSOpportunistic}},
		{raw: "http://mail.example.com", wantErr: "scheme"},
		{raw: "smtp://", wantErr: "no host"},
		{raw: "smtp://mail.example.com:99999", wantErr: "port"},
		{raw: "smtp://mail.example.com?tls=none", wantErr: "loopback"},
		{raw: "smtp://mail.example.com?tls=maybe", wantErr: "tls must be"},
		{raw: "smtps://mail.example.com?tls=none", wantErr: "always TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseSMTPURL(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			got.Timeout = 0
			if err != nil || got != tc.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestDirSender_WritesAParseableFileAndLogsTheLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var log bytes.Buffer
	s := NewDirSender(dir, "pbe <noreply@localhost>", slog.New(slog.NewTextHandler(&log, nil)))
	if err := s.Send(context.Background(), render(t, "verify")); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("files: %v", files)
	}
	fi, _ := os.Stat(files[0])
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(files[0])
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil || !strings.Contains(msg.Header.Get("Subject"), "Verify") {
		t.Fatalf("parse: %v %v", msg, err)
	}
	if !strings.Contains(log.String(), longLink) {
		t.Fatalf("the log lacks the link: %s", log.String())
	}
}

func TestTemplates_OverrideOneKeepTheRest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "verify.subject"), []byte("Welcome to {{.Product}}, {{.Email}}"), 0o644)
	os.WriteFile(filepath.Join(dir, "verify.txt"), []byte("Click {{.Link}}"), 0o644)
	tm, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tm.Render("verify", "a@example.com", Data{Product: "Acme Cloud", Link: "http://x/y"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Welcome to Acme Cloud, a@example.com" || m.Text != "Click http://x/y" || !strings.Contains(m.HTML, "http://x/y") {
		t.Fatalf("override: %+v", m)
	}
	r, _ := tm.Render("reset", "a@example.com", Data{Link: "http://r"})
	if !strings.Contains(r.Subject, "Reset") {
		t.Fatalf("the reset template changed: %q", r.Subject)
	}
	if _, err := tm.Render("nope", "a@example.com", Data{}); err == nil {
		t.Fatal("an unknown template rendered")
	}
	// HTML templates escape what they are given.
	q, _ := tm.Render("quota_decision", "a@example.com", Data{Kind: "max_tenants", Value: 5, State: "rejected", Reason: "<script>x</script>"})
	if strings.Contains(q.HTML, "<script>") || !strings.Contains(q.Text, "<script>x</script>") {
		t.Fatalf("escaping: %s", q.HTML)
	}
	os.WriteFile(filepath.Join(dir, "reset.html"), []byte("{{.Link"), 0o644)
	if _, err := LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "reset.html")) {
		t.Fatalf("a broken override: %v", err)
	}
}
