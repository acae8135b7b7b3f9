package email

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTemplates_RenderBuiltIn(t *testing.T) {
	tm, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	data := Data{Link: longLink, Kind: "max_tenants", Value: 10, State: "approved", Reason: "welcome aboard"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m, err := tm.Render(name, "alice@example.com", data)
			if err != nil {
				t.Fatal(err)
			}
			if m.To != "alice@example.com" || m.Subject == "" || m.Text == "" || m.HTML == "" {
				t.Fatalf("got %+v, want a recipient, a subject and both parts", m)
			}
			if strings.ContainsAny(m.Subject, "\r\n") {
				t.Errorf("subject %q spans lines", m.Subject)
			}
			for _, part := range []string{m.Subject, m.Text, m.HTML} {
				if strings.Contains(part, "<no value>") {
					t.Errorf("a field rendered as <no value>:\n%s", part)
				}
			}
		})
	}
	t.Run("links in both parts", func(t *testing.T) {
		for _, name := range []string{Verify, Reset, SignupExists} {
			m, _ := tm.Render(name, "alice@example.com", data)
			if !strings.Contains(m.Text, longLink) || !strings.Contains(m.HTML, strings.ReplaceAll(longLink, "&", "&amp;")) {
				t.Errorf("%s lacks the link:\n%s\n%s", name, m.Text, m.HTML)
			}
		}
	})
	t.Run("quota decision", func(t *testing.T) {
		m, _ := tm.Render(QuotaDecision, "alice@example.com", Data{Kind: "max_tenants", Value: 10, State: "rejected", Reason: "not this month"})
		for _, want := range []string{"max_tenants", "10", "rejected", "not this month"} {
			if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
				t.Errorf("lacks %q:\n%s\n%s", want, m.Text, m.HTML)
			}
		}
	})
}

func TestTemplates_Render(t *testing.T) {
	tm, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("unknown name", func(t *testing.T) {
		if _, err := tm.Render("welcome", "a@example.com", Data{}); !errors.Is(err, ErrUnknownTemplate) {
			t.Fatalf("got %v, want ErrUnknownTemplate", err)
		}
	})
	t.Run("HTML escapes data, text does not", func(t *testing.T) {
		m, err := tm.Render(QuotaDecision, "a@example.com", Data{Kind: "max_tenants", Value: 5, State: "rejected", Reason: `<script>alert("x")</script>`})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;") {
			t.Errorf("HTML part: got %s, want the reason escaped", m.HTML)
		}
		if !strings.Contains(m.Text, `<script>alert("x")</script>`) {
			t.Errorf("text part: got %s, want the reason as given", m.Text)
		}
	})
	t.Run("a javascript: link is neutralised in HTML", func(t *testing.T) {
		m, _ := tm.Render(Verify, "a@example.com", Data{Link: "javascript:alert(1)"})
		if strings.Contains(m.HTML, `href="javascript:`) {
			t.Errorf("HTML part: got %s", m.HTML)
		}
	})
	t.Run("data cannot break the subject onto two lines", func(t *testing.T) {
		m, err := tm.Render(QuotaDecision, "a@example.com", Data{Kind: "max_tenants\r\nBcc: victim@example.com", State: "approved"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(m.Subject, "\r\n") {
			t.Fatalf("got subject %q, want one line", m.Subject)
		}
	})
	t.Run("defaults: product and e-mail", func(t *testing.T) {
		m, _ := tm.Render(Verify, "bob@example.com", Data{Link: "https://x"})
		if !strings.Contains(m.Subject, "pbe") || !strings.Contains(m.Text, "bob@example.com") {
			t.Errorf("got %q / %q, want pbe and bob@example.com", m.Subject, m.Text)
		}
		m, _ = tm.Render(Verify, "bob@example.com", Data{Product: "Acme Cloud", Link: "https://x"})
		if !strings.Contains(m.Subject, "Acme Cloud") {
			t.Errorf("got %q, want Acme Cloud", m.Subject)
		}
	})
}

func TestLoadTemplates_Override(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"verify.subject": "Welcome to {{.Product}},\n {{.Email}}\n",
		"verify.txt":     "Click {{.Link}}",
		"README.md":      "not a template, ignored",
	})
	tm, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	builtIn, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	data := Data{Product: "Acme Cloud", Link: "https://x/y"}
	m, err := tm.Render(Verify, "a@example.com", data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Welcome to Acme Cloud, a@example.com" {
		t.Errorf("subject: got %q, want the override's", m.Subject)
	}
	if m.Text != "Click https://x/y" {
		t.Errorf("text: got %q, want the override's", m.Text)
	}
	if want, _ := builtIn.Render(Verify, "a@example.com", data); m.HTML != want.HTML {
		t.Errorf("HTML: got %q, want the built-in %q", m.HTML, want.HTML)
	}
	for _, name := range []string{Reset, SignupExists, PasswordChanged, QuotaDecision} {
		got, _ := tm.Render(name, "a@example.com", data)
		want, _ := builtIn.Render(name, "a@example.com", data)
		if got != want {
			t.Errorf("%s: got %+v, want the built-in %+v", name, got, want)
		}
	}
}

func TestLoadTemplates_Errors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // in the error, besides the directory
	}{
		{"does not parse", map[string]string{"reset.html": "<p>{{.Link</p>"}, "reset.html"},
		{"subject does not parse", map[string]string{"verify.subject": "{{if .Email}}"}, "verify.subject"},
		{"unknown field", map[string]string{"password_changed.txt": "Hello {{.Name}}"}, "password_changed.txt"},
		{"unknown template name", map[string]string{"verfy.txt": "typo"}, "verfy.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			_, err := LoadTemplates(dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tc.want)) {
				t.Fatalf("got %v, want an error naming %s", err, filepath.Join(dir, tc.want))
			}
		})
	}
	t.Run("directory missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		if _, err := LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("got %v, want an error naming %s", err, dir)
		}
	})
}
