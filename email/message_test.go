package email

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCompose(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	m := Message{
		To:      "Ålice <alice@example.com>",
		Subject: "Vérifiez votre adresse — merci",
		Text:    "Open:\n\n" + longLink + "\n\nThanks.\n",
		HTML:    `<p><a href="` + longLink + `">Verify</a></p>`,
	}
	env, raw, err := compose("pbe <noreply@example.com>", m, now)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("envelope", func(t *testing.T) {
		if env.from != "noreply@example.com" || env.to != "alice@example.com" {
			t.Errorf("got %+v, want noreply@example.com -> alice@example.com", env)
		}
	})
	t.Run("7-bit, CRLF, short lines", func(t *testing.T) {
		for i, b := range raw {
			if b > 127 {
				t.Fatalf("byte %d is %#x, want 7-bit ASCII", i, b)
			}
			if b == '\n' && (i == 0 || raw[i-1] != '\r') {
				t.Fatalf("bare LF at byte %d", i)
			}
		}
		for _, line := range strings.Split(string(raw), "\r\n") {
			if len(line) > 998 {
				t.Fatalf("a line of %d characters, want at most 998", len(line))
			}
		}
	})
	p := parseMessage(t, raw)
	t.Run("headers", func(t *testing.T) {
		if got := p.decodedSubject(t); got != m.Subject {
			t.Errorf("Subject: got %q, want %q", got, m.Subject)
		}
		if got, err := p.header.AddressList("To"); err != nil || len(got) != 1 || got[0].Name != "Ålice" || got[0].Address != "alice@example.com" {
			t.Errorf("To: got %v %v, want Ålice <alice@example.com>", got, err)
		}
		if got, err := p.header.Date(); err != nil || !got.Equal(now) {
			t.Errorf("Date: got %v %v, want %v", got, err, now)
		}
		if id := p.header.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
			t.Errorf("Message-ID: got %q, want <...@example.com>", id)
		}
		if got := p.header.Get("MIME-Version"); got != "1.0" {
			t.Errorf("MIME-Version: got %q, want 1.0", got)
		}
	})
	t.Run("both parts, link intact", func(t *testing.T) {
		if len(p.parts) != 2 {
			t.Fatalf("parts: got %v, want text/plain and text/html", p.parts)
		}
		if got := p.parts["text/plain"]; !strings.Contains(got, "\n"+longLink+"\r\n") {
			t.Errorf("text part: got %q, want the link whole on its own line", got)
		}
		if got := p.parts["text/html"]; got != m.HTML {
			t.Errorf("HTML part: got %q, want %q", got, m.HTML)
		}
	})
	t.Run("each message its own Message-ID", func(t *testing.T) {
		_, raw2, err := compose("pbe <noreply@example.com>", m, now)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := p.header.Get("Message-Id"), parseMessage(t, raw2).header.Get("Message-Id"); a == b {
			t.Errorf("two messages share Message-ID %s", a)
		}
	})
}

func TestCompose_TextOnly(t *testing.T) {
	_, raw, err := compose("noreply@example.com", Message{To: "a@example.com", Subject: "s", Text: "hello"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p := parseMessage(t, raw); len(p.parts) != 1 || p.parts["text/plain"] != "hello" {
		t.Fatalf("parts: got %v, want text/plain only", p.parts)
	}
	if _, _, err := compose("noreply@example.com", Message{To: "a@example.com", Subject: "s"}, time.Now()); err == nil {
		t.Fatal("a message without parts was composed")
	}
}

func TestCompose_Refusals(t *testing.T) {
	ok := Message{To: "a@example.com", Subject: "hi", Text: "x"}
	for _, tc := range []struct {
		name      string
		from      string
		m         Message
		injection bool
	}{
		{"CRLF in To", "noreply@example.com", Message{To: "a@example.com\r\nBcc: victim@example.com", Subject: "hi", Text: "x"}, true},
		{"LF in To", "noreply@example.com", Message{To: "a@example.com\nBcc: victim@example.com", Subject: "hi", Text: "x"}, true},
		{"CRLF in Subject", "noreply@example.com", Message{To: "a@example.com", Subject: "hi\r\nBcc: victim@example.com", Text: "x"}, true},
		{"CR in Subject", "noreply@example.com", Message{To: "a@example.com", Subject: "hi\rBcc: victim@example.com", Text: "x"}, true},
		{"LF in From", "noreply@example.com\nBcc: victim@example.com", ok, true},
		{"two recipients", "noreply@example.com", Message{To: "a@example.com, b@example.com", Subject: "hi", Text: "x"}, false},
		{"not an address", "noreply@example.com", Message{To: "alice", Subject: "hi", Text: "x"}, false},
		{"sender not an address", "pbe", ok, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, raw, err := compose(tc.from, tc.m, time.Now())
			if err == nil {
				t.Fatalf("composed:\n%s", raw)
			}
			if got := errors.Is(err, ErrHeaderInjection); got != tc.injection {
				t.Fatalf("got %v, want ErrHeaderInjection %v", err, tc.injection)
			}
		})
	}
}
