package email

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
)

// Data is what a template can use.
type Data struct {
	// Product names the platform ("pbe" unless configured).
	Product string
	// Email is the recipient's address.
	Email string
	// Link is the verification, reset or login link.
	Link    string
	BaseURL string
	// Kind, Value, State and Reason describe a quota decision.
	Kind   string
	Value  int64
	State  string
	Reason string
}

// Names of the platform's e-mails.
var Names = []string{"verify", "reset", "signup_exists", "password_changed", "quota_decision"}

//go:embed templates
var builtin embed.FS

// Templates renders the platform's e-mails.
type Templates struct {
	set map[string]*set
}

type set struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// LoadTemplates loads the built-in templates and, when overrideDir is not
// empty, replaces each with the files {name}.subject, {name}.txt and
// {name}.html found there. A file that does not parse is an error naming
// it.
func LoadTemplates(overrideDir string) (*Templates, error) {
	t := &Templates{set: map[string]*set{}}
	for _, name := range Names {
		s := &set{}
		for _, ext := range []string{"subject", "txt", "html"} {
			file := name + "." + ext
			src, where, err := read(overrideDir, file)
			if err != nil {
				return nil, err
			}
			if err := s.parse(ext, file, src); err != nil {
				return nil, fmt.Errorf("e-mail template %s: %w", where, err)
			}
		}
		t.set[name] = s
	}
	return t, nil
}

// read returns file from overrideDir if it is there, else the built-in.
func read(overrideDir, file string) (string, string, error) {
	if overrideDir != "" {
		p := filepath.Join(overrideDir, file)
		b, err := os.ReadFile(p)
		if err == nil {
			return string(b), p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", p, fmt.Errorf("e-mail template: %w", err)
		}
	}
	b, err := builtin.ReadFile("templates/" + file)
	return string(b), "built-in " + file, err
}

func (s *set) parse(ext, name, src string) error {
	var err error
	switch ext {
	case "subject":
		s.subject, err = texttemplate.New(name).Option("missingkey=error").Parse(strings.TrimSpace(src))
	case "txt":
		s.text, err = texttemplate.New(name).Option("missingkey=error").Parse(src)
	case "html":
		s.html, err = htmltemplate.New(name).Option("missingkey=error").Parse(src)
	}
	return err
}

// Render returns e-mail name for to.
func (t *Templates) Render(name, to string, d Data) (Message, error) {
	s, ok := t.set[name]
	if !ok {
		return Message{}, fmt.Errorf("no e-mail template %q", name)
	}
	if d.Product == "" {
		d.Product = "pbe"
	}
	if d.Email == "" {
		d.Email = to
	}
	var subj, text, html bytes.Buffer
	if err := s.subject.Execute(&subj, d); err != nil {
		return Message{}, fmt.Errorf("e-mail %s subject: %w", name, err)
	}
	if err := s.text.Execute(&text, d); err != nil {
		return Message{}, fmt.Errorf("e-mail %s text: %w", name, err)
	}
	if err := s.html.Execute(&html, d); err != nil {
		return Message{}, fmt.Errorf("e-mail %s HTML: %w", name, err)
	}
	subject := strings.Join(strings.Fields(subj.String()), " ")
	return Message{To: to, Subject: subject, Text: text.String(), HTML: html.String()}, nil
}
