package email

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestDirSender_Send(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var log bytes.Buffer
	s := NewDirSender(dir, testFrom, slog.New(slog.NewJSONHandler(&log, nil)))
	m := verifyMessage(t)
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("got %d files, want 1 .eml (no temp file left)", len(files))
	}
	name := files[0].Name()
	path := filepath.Join(dir, name)

	t.Run("file name and modes", func(t *testing.T) {
		if !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]+\.eml$`).MatchString(name) {
			t.Errorf("name: got %q, want 20261128T101500Z-<random>.eml", name)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("file mode: got %v, want 0600", fi.Mode().Perm())
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
			t.Errorf("directory mode: got %v, want 0700", fi.Mode().Perm())
		}
	})
	t.Run("the file is the message", func(t *testing.T) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := parseMessage(t, raw)
		if got := p.decodedSubject(t); got != m.Subject {
			t.Errorf("Subject: got %q, want %q", got, m.Subject)
		}
		if got := p.header.Get("From"); got != `"pbe" <noreply@example.com>` {
			t.Errorf("From: got %q, want pbe <noreply@example.com>", got)
		}
		if !strings.Contains(p.parts["text/plain"], longLink) {
			t.Errorf("text part lacks the link:\n%s", p.parts["text/plain"])
		}
	})
	t.Run("the log has the link", func(t *testing.T) {
		var entry struct {
			Msg, To, Subject, Path string
			Links                  []string
		}
		if err := json.Unmarshal(log.Bytes(), &entry); err != nil {
			t.Fatalf("log %q: %v", log.String(), err)
		}
		if entry.Msg != "e-mail written" || entry.To != "alice@example.com" || entry.Subject != m.Subject || entry.Path != path {
			t.Errorf("log: got %+v, want e-mail written to alice@example.com, %q, %s", entry, m.Subject, path)
		}
		if !slices.Equal(entry.Links, []string{longLink}) {
			t.Errorf("links: got %q, want [%s]", entry.Links, longLink)
		}
	})
}

func TestDirSender_SendConcurrently(t *testing.T) {
	dir := t.TempDir()
	s := NewDirSender(dir, testFrom, slog.New(slog.DiscardHandler))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := s.Send(context.Background(), Message{To: "a@example.com", Subject: "s", Text: "x"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if files, _ := filepath.Glob(filepath.Join(dir, "*.eml")); len(files) != n {
		t.Fatalf("got %d files, want %d", len(files), n)
	}
}

func TestDirSender_Refusals(t *testing.T) {
	dir := t.TempDir()
	s := NewDirSender(dir, testFrom, slog.New(slog.DiscardHandler))
	err := s.Send(context.Background(), Message{To: "a@example.com", Subject: "hi\r\nBcc: victim@example.com", Text: "x"})
	if !errors.Is(err, ErrHeaderInjection) {
		t.Errorf("got %v, want ErrHeaderInjection", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Send(ctx, Message{To: "a@example.com", Subject: "s", Text: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("got %d files, want none", len(files))
	}
}

func TestLinks(t *testing.T) {
	text := "Open https://example.com/a?b=c&d=e. Or log in at http://localhost:8090/, or (https://example.com/x).\nNot ftp://example.com."
	want := []string{"https://example.com/a?b=c&d=e", "http://localhost:8090/", "https://example.com/x"}
	if got := links(text); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
