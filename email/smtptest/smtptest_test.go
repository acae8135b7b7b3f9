package smtptest_test

import (
	"context"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbe/pbe/email"
	"github.com/pbe/pbe/email/smtptest"
)

// sendVia sends one message to to through url with the platform's sender.
func sendVia(t *testing.T, url, to, subject string) error {
	t.Helper()
	cfg, err := email.ParseSMTPURL(url)
	if err != nil {
		t.Fatalf("ParseSMTPURL(%q): %v", url, err)
	}
	s, err := email.NewSMTPSender(cfg, "pbe <noreply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	return s.Send(context.Background(), email.Message{To: to, Subject: subject, Text: "text of " + subject, HTML: "<p>html of " + subject + "</p>"})
}

func TestServer_URLWorksWithThePlatformsSender(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     smtptest.Options
		wantUser string
	}{
		{"no credentials", smtptest.Options{}, ""},
		{"credentials", smtptest.Options{Username: "mailer", Password: "p@ss word/%"}, "mailer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.StartWith(t, tc.opts)
			if !strings.HasPrefix(srv.URL(), "smtp://") {
				t.Fatalf("URL: got %q, want smtp://...", srv.URL())
			}
			if err := sendVia(t, srv.URL(), "Alice@Example.com", "Grüße"); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := srv.WaitFor(t, "alice@example.com", 10*time.Second)
			if got.From != "noreply@example.com" || len(got.To) != 1 || got.To[0] != "Alice@Example.com" {
				t.Errorf("envelope: got %q -> %q, want noreply@example.com -> [Alice@Example.com]", got.From, got.To)
			}
			if got.Subject != "Grüße" || got.Text != "text of Grüße" || got.HTML != "<p>html of Grüße</p>" {
				t.Errorf("parsed: got %q / %q / %q", got.Subject, got.Text, got.HTML)
			}
			if got.User != tc.wantUser || got.TLS {
				t.Errorf("session: got user %q, TLS %v; want user %q, no TLS", got.User, got.TLS, tc.wantUser)
			}
			if !strings.Contains(string(got.Raw), "Content-Type: multipart/alternative") {
				t.Errorf("Raw is not the message as sent:\n%s", got.Raw)
			}
		})
	}
}

func TestStart_AcceptsAnyCredentials(t *testing.T) {
	srv := smtptest.Start(t)
	url := strings.Replace(srv.URL(), "smtp://", "smtp://anyone:anything@", 1)
	if err := sendVia(t, url, "bob@example.com", "hi"); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := srv.WaitFor(t, "bob@example.com", 10*time.Second); got.User != "anyone" {
		t.Fatalf("user: got %q, want anyone", got.User)
	}
}

func TestStartWith_RequiresItsCredentials(t *testing.T) {
	srv := smtptest.StartWith(t, smtptest.Options{Username: "u", Password: "right"})
	url := strings.Replace(srv.URL(), "right", "wrong", 1)
	if err := sendVia(t, url, "bob@example.com", "hi"); err == nil {
		t.Error("a wrong password was accepted")
	}
	// Without logging in at all: the server refuses MAIL FROM.
	err := smtp.SendMail(srv.Addr(), nil, "noreply@example.com", []string{"bob@example.com"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil {
		t.Error("a message without AUTH was accepted")
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("got %d messages, want 0", n)
	}
}

func TestServer_WaitFor(t *testing.T) {
	srv := smtptest.Start(t)
	t.Run("newest message to the recipient", func(t *testing.T) {
		for _, s := range []string{"first", "second"} {
			if err := sendVia(t, srv.URL(), "carol@example.com", s); err != nil {
				t.Fatal(err)
			}
		}
		if err := sendVia(t, srv.URL(), "dave@example.com", "other"); err != nil {
			t.Fatal(err)
		}
		if got := srv.WaitFor(t, "carol@example.com", 10*time.Second); got.Subject != "second" {
			t.Errorf("got %q, want second", got.Subject)
		}
		if n := len(srv.Messages()); n != 3 {
			t.Errorf("Messages: got %d, want 3", n)
		}
	})
	t.Run("several waiters each get theirs", func(t *testing.T) {
		recipients := []string{"w1@example.com", "w2@example.com", "w3@example.com"}
		var wg sync.WaitGroup
		got := make([]string, len(recipients))
		for i, to := range recipients {
			// A failing WaitFor ends only its goroutine; wg.Go still
			// calls Done, and the test is marked failed.
			wg.Go(func() { got[i] = srv.WaitFor(t, to, 10*time.Second).Subject })
		}
		time.Sleep(50 * time.Millisecond) // let the waiters wait (not required for correctness)
		for _, to := range recipients {
			if err := sendVia(t, srv.URL(), to, "for "+to); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		for i, to := range recipients {
			if got[i] != "for "+to {
				t.Errorf("waiter for %s: got %q", to, got[i])
			}
		}
	})
}

func TestParse(t *testing.T) {
	raw := "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nlong=\r\n line =3D ok\r\n"
	got := smtptest.Parse([]byte(raw))
	if got.Subject != "Grüße" || got.Text != "long line = ok\r\n" || got.HTML != "" {
		t.Fatalf("got %q / %q / %q", got.Subject, got.Text, got.HTML)
	}
	if got := smtptest.Parse([]byte("not a message")); string(got.Raw) != "not a message" {
		t.Fatalf("Raw: got %q", got.Raw)
	}
}
