package email

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email/smtptest"
)

const testFrom = "pbe <noreply@example.com>"

// send parses raw, builds a sender from testFrom and sends m.
func send(t *testing.T, raw string, m Message) error {
	t.Helper()
	cfg, err := ParseSMTPURL(raw)
	if err != nil {
		t.Fatalf("ParseSMTPURL(%q): %v", raw, err)
	}
	s, err := NewSMTPSender(cfg, testFrom)
	if err != nil {
		t.Fatalf("NewSMTPSender: %v", err)
	}
	return s.Send(context.Background(), m)
}

func verifyMessage(t *testing.T) Message {
	t.Helper()
	tm, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tm.Render(Verify, "alice@example.com", Data{Link: longLink})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSMTPSender_Send(t *testing.T) {
	tlsConf := selfSigned(t)
	hello := Message{To: "bob@example.com", Subject: "hi", Text: "hello"}

	t.Run("STARTTLS and AUTH PLAIN deliver both parts with the link intact", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{Username: "mailer", Password: "p@ss:w/rd", TLS: tlsConf})
		m := verifyMessage(t)
		m.Subject = "Vérifiez votre adresse"
		if err := send(t, "smtp://mailer:p%40ss%3Aw%2Frd@"+srv.Addr()+"?insecure_skip_verify=true", m); err != nil {
			t.Fatalf("send: %v", err)
		}
		got := srv.WaitFor(t, "alice@example.com", 10*time.Second)
		if got.From != "noreply@example.com" || strings.Join(got.To, ",") != "alice@example.com" {
			t.Errorf("envelope: got %q -> %q, want noreply@example.com -> alice@example.com", got.From, got.To)
		}
		if !got.TLS || got.User != "mailer" {
			t.Errorf("session: got TLS %v, user %q; want TLS, user mailer", got.TLS, got.User)
		}
		p := parseMessage(t, got.Raw)
		if s := p.decodedSubject(t); s != m.Subject {
			t.Errorf("Subject: got %q, want %q", s, m.Subject)
		}
		if !strings.Contains(p.parts["text/plain"], longLink) {
			t.Errorf("text part lacks the link:\n%s", p.parts["text/plain"])
		}
		if !strings.Contains(p.parts["text/html"], `href="`+strings.ReplaceAll(longLink, "&", "&amp;")+`"`) {
			t.Errorf("HTML part lacks the link:\n%s", p.parts["text/html"])
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{TLS: tlsConf, Implicit: true})
		if err := send(t, "smtps://"+srv.Addr()+"?insecure_skip_verify=true", hello); err != nil {
			t.Fatalf("send: %v", err)
		}
		if got := srv.WaitFor(t, "bob@example.com", 10*time.Second); !got.TLS {
			t.Error("got an unencrypted session, want TLS")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right", TLS: tlsConf})
		err := send(t, "smtp://u:wrong@"+srv.Addr()+"?insecure_skip_verify=true", hello)
		if err == nil || !strings.Contains(err.Error(), "AUTH") {
			t.Fatalf("got %v, want an AUTH error", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("STARTTLS required but not offered", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right"})
		if err := send(t, "smtp://u:right@"+srv.Addr(), hello); !errors.Is(err, ErrNoSTARTTLS) {
			t.Fatalf("got %v, want ErrNoSTARTTLS", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("got %d messages, want 0", n)
		}
	})
	t.Run("opportunistic without STARTTLS keeps the password", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right"})
		if err := send(t, "smtp://u:right@"+srv.Addr()+"?tls=opportunistic", hello); !errors.Is(err, ErrUnencryptedAuth) {
			t.Fatalf("got %v, want ErrUnencryptedAuth", err)
		}
	})
	t.Run("opportunistic without STARTTLS or credentials sends", func(t *testing.T) {
		srv := smtptest.Start(t)
		if err := send(t, "smtp://"+srv.Addr()+"?tls=opportunistic", hello); err != nil {
			t.Fatalf("send: %v", err)
		}
		srv.WaitFor(t, "bob@example.com", 10*time.Second)
	})
	t.Run("opportunistic upgrades when offered", func(t *testing.T) {
		srv := smtptest.StartWith(t, smtptest.Options{TLS: tlsConf})
		if err := send(t, "smtp://"+srv.Addr()+"?tls=opportunistic&insecure_skip_verify=true", hello); err != nil {
			t.Fatalf("send: %v", err)
		}
		if got := srv.WaitFor(t, "bob@example.com", 10*time.Second); !got.TLS {
			t.Error("got an unencrypted session, want STARTTLS")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		for _, raw := range []string{"smtp://%s", "smtps://%s"} {
			srv := smtptest.StartWith(t, smtptest.Options{TLS: tlsConf, Implicit: strings.HasPrefix(raw, "smtps")})
			if err := send(t, strings.Replace(raw, "%s", srv.Addr(), 1), hello); err == nil {
				t.Errorf("%s: a self-signed certificate was accepted", raw)
			}
		}
	})
	t.Run("header injection sends nothing", func(t *testing.T) {
		srv := smtptest.Start(t)
		for _, m := range []Message{
			{To: "bob@example.com\r\nBcc: victim@example.com", Subject: "hi", Text: "x"},
			{To: "bob@example.com", Subject: "hi\r\nBcc: victim@example.com", Text: "x"},
		} {
			if err := send(t, srv.URL(), m); !errors.Is(err, ErrHeaderInjection) {
				t.Errorf("To %q, Subject %q: got %v, want ErrHeaderInjection", m.To, m.Subject, err)
			}
		}
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("got %d messages, want 0", n)
		}
	})
}

// TestSMTPSender_SendBoundedByContext: a server that accepts the
// connection and never greets must not hold Send past its context.
func TestSMTPSender_SendBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	cfg, err := ParseSMTPURL("smtp://" + ln.Addr().String() + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration // SMTPConfig.Timeout
		ctx     time.Duration // the caller's deadline
	}{
		{"caller's context", time.Minute, 200 * time.Millisecond},
		{"config timeout", 200 * time.Millisecond, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.Timeout = tc.timeout
			s, err := NewSMTPSender(cfg, testFrom)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			err = s.Send(ctx, Message{To: "bob@example.com", Subject: "hi", Text: "x"})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

func TestNewSMTPSender_Refusals(t *testing.T) {
	good := SMTPConfig{Host: "mail.example.com", Port: "587", TLS: TLSStartTLS}
	for _, tc := range []struct {
		name string
		cfg  SMTPConfig
		from string
		want string
	}{
		{"from not an address", good, "pbe", "sender"},
		{"line break in from", good, "noreply@example.com\r\nBcc: x@example.com", "line break"},
		{"no host", SMTPConfig{Port: "587", TLS: TLSStartTLS}, testFrom, "no host"},
		{"no TLS mode", SMTPConfig{Host: "mail.example.com", Port: "587"}, testFrom, "tls must be"},
		{"plaintext off loopback", SMTPConfig{Host: "mail.example.com", Port: "25", TLS: TLSNone}, testFrom, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSMTPSender(tc.cfg, tc.from); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
