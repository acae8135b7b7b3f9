package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email"
	"github.com/pbe/pbe/email/smtptest"
)

// mailOptions returns validated options with the e-mail flags set.
func mailOptions(t *testing.T, smtp, from, templates string) *serveOptions {
	t.Helper()
	o := defaultServeOptions()
	o.smtp, o.mailFrom, o.mailTemplates = smtp, from, templates
	if err := o.validateMail(); err != nil {
		t.Fatalf("validateMail: %v", err)
	}
	return &o
}

func TestNewMailer(t *testing.T) {
	t.Run("no SMTP: files under {dir}/mail and the link in the log", func(t *testing.T) {
		dataDir := t.TempDir()
		var log bytes.Buffer
		sender, templates, err := newMailer(mailOptions(t, "", "", ""), dataDir, slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := templates.Render(email.Verify, "alice@example.com", email.Data{Link: "http://localhost:8090/api/cp/auth/verify?token=abc"})
		if err != nil {
			t.Fatal(err)
		}
		if err := sender.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dataDir, "mail", "*.eml"))
		if len(files) != 1 {
			t.Fatalf("got files %v, want one .eml in %s", files, filepath.Join(dataDir, "mail"))
		}
		raw, _ := os.ReadFile(files[0])
		if got := smtptest.Parse(raw); !strings.Contains(got.Text, "token=abc") {
			t.Errorf("the file lacks the link:\n%s", raw)
		}
		if !strings.Contains(string(raw), "From: \"pbe\" <noreply@localhost>") {
			t.Errorf("From: want the default pbe <noreply@{domain}>:\n%s", raw)
		}
		if !strings.Contains(log.String(), "token=abc") || !strings.Contains(log.String(), "component=mail") {
			t.Errorf("the log lacks the link or the component:\n%s", log.String())
		}
	})
	t.Run("SMTP", func(t *testing.T) {
		srv := smtptest.Start(t)
		var log bytes.Buffer
		sender, templates, err := newMailer(mailOptions(t, srv.URL(), "Acme <noreply@acme.test>", ""), t.TempDir(), slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := templates.Render(email.Reset, "bob@example.com", email.Data{Link: "http://localhost/reset?token=xyz"})
		if err := sender.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if got := srv.WaitFor(t, "bob@example.com", 10*time.Second); got.From != "noreply@acme.test" || !strings.Contains(got.Text, "token=xyz") {
			t.Errorf("got from %q, text %q; want noreply@acme.test and the link", got.From, got.Text)
		}
	})
	t.Run("SMTP password stays out of the log", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "s3cret-pw"})
		var log bytes.Buffer
		if _, _, err := newMailer(mailOptions(t, srv.URL(), "", ""), t.TempDir(), slog.New(slog.NewTextHandler(&log, nil))); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log.String(), "s3cret") || !strings.Contains(log.String(), srv.Addr()) {
			t.Errorf("log: got %s, want the server without the password", log.String())
		}
	})
	t.Run("bad SMTP URL", func(t *testing.T) {
		o := defaultServeOptions()
		o.smtp, o.mailFrom = "http://mail.example.com", "noreply@example.com"
		_, _, err := newMailer(&o, t.TempDir(), slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "--smtp") || !strings.Contains(err.Error(), "smtp://") {
			t.Fatalf("got %v, want an --smtp error saying what a URL looks like", err)
		}
	})
}

func TestServeOptions_ValidateMail(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "verify.html"), []byte("{{.Link"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                  string
		smtp, from, templates string
		want                  string // in the error; "" for none
	}{
		{name: "defaults"},
		{name: "SMTP URL with escaped password", smtp: "smtps://u:p%40ss@mail.example.com"},
		{name: "mail-from with a name", from: "Acme Cloud <noreply@acme.test>"},
		{name: "bad scheme", smtp: "mail.example.com:587", want: "--smtp"},
		{name: "plaintext off loopback", smtp: "smtp://mail.example.com?tls=none", want: "loopback"},
		{name: "mail-from not an address", from: "noreply", want: "--mail-from"},
		{name: "mail-from with a line break", from: "noreply@acme.test\r\nBcc: victim@example.com", want: "--mail-from"},
		{name: "templates directory missing", templates: filepath.Join(broken, "nope"), want: "--mail-templates"},
		{name: "broken template", templates: broken, want: filepath.Join(broken, "verify.html")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultServeOptions()
			o.smtp, o.mailFrom, o.mailTemplates = tc.smtp, tc.from, tc.templates
			err := o.validateMail()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("mail-from defaults to the base domain", func(t *testing.T) {
		o := defaultServeOptions()
		o.domain = "example.com"
		if err := o.validateMail(); err != nil {
			t.Fatal(err)
		}
		if o.mailFrom != "pbe <noreply@example.com>" {
			t.Fatalf("got %q, want pbe <noreply@example.com>", o.mailFrom)
		}
	})
}
