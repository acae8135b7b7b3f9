package email

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	texttemplate "text/template"
)

// Names of the platform's e-mails, for Templates.Render.
const (
	// Verify asks a new customer to confirm the address (Data.Link).
	Verify = "verify"
	// Reset carries a password-reset link (Data.Link).
	Reset = "reset"
	// SignupExists tells the owner of an address that someone tried to
	// sign up with it again, so that sign-up does not reveal which
	// addresses have accounts (Data.Link: where to log in).
	SignupExists = "signup_exists"
	// PasswordChanged tells that the password was changed.
	PasswordChanged = "password_changed"
	// QuotaDecision tells the decision on a quota request (Data.Kind,
	// Value, State and Reason).
	QuotaDecision = "quota_decision"
)

// names are the templates every Templates has.
var names = []string{Verify, Reset, SignupExists, PasswordChanged, QuotaDecision}

// The three files of a template, {name}.{ext}.
const (
	extSubject = "subject"
	extText    = "txt"
	extHTML    = "html"
)

// ErrUnknownTemplate is returned by Render for a name that is not one of
// the constants above.
var ErrUnknownTemplate = errors.New("no such e-mail template")

// Data is what a template can use.
type Data struct {
	// Product names the platform ("pbe" when empty).
	Product string
	// Email is the recipient's address (Render's to when empty).
	Email string
	// Link is the verification, reset or login link.
	Link string
	// BaseURL is the platform's public URL.
	BaseURL string
	// Kind, Value, State ("approved" or "rejected") and Reason describe a
	// quota decision.
	Kind, State, Reason string
	Value               int64
}

// sampleData is what LoadTemplates renders every template with, to find
// at start-up a template that fails on execution (a misspelt field).
var sampleData = Data{
	Product: "pbe", Email: "alice@example.com", Link: "https://example.com/x?token=t", BaseURL: "https://example.com",
	Kind: "max_tenants", State: "approved", Reason: "ok", Value: 5,
}

//go:embed templates
var builtin embed.FS

// Templates renders the platform's e-mails. It is immutable after
// LoadTemplates and safe for concurrent use.
type Templates struct {
	set map[string]*templateSet
}

// templateSet is one name's templates.
type templateSet struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// LoadTemplates returns the built-in templates, each file of which is
// replaced by {name}.subject, {name}.txt or {name}.html in overrideDir
// when there is one (overrideDir "": the built-ins only). It is an error,
// naming the file, when overrideDir is not a readable directory, holds a
// template file for an unknown name, or a template does not parse or fails
// to render sample data.
func LoadTemplates(overrideDir string) (*Templates, error) {
	overrides, err := listOverrides(overrideDir)
	if err != nil {
		return nil, err
	}
	t := &Templates{set: map[string]*templateSet{}}
	for _, name := range names {
		s := &templateSet{}
		for _, ext := range []string{extSubject, extText, extHTML} {
			file := name + "." + ext
			src, where, err := readTemplate(overrideDir, overrides[file], file)
			if err != nil {
				return nil, err
			}
			if err := s.parse(ext, file, src); err != nil {
				return nil, fmt.Errorf("e-mail template %s: %w", where, err)
			}
			if err := s.check(ext); err != nil {
				return nil, fmt.Errorf("e-mail template %s: %w", where, err)
			}
		}
		t.set[name] = s
	}
	return t, nil
}

// listOverrides returns the template files in dir, and an error for one
// whose name is unknown (a misspelt override would otherwise be ignored).
func listOverrides(dir string) (map[string]bool, error) {
	found := map[string]bool{}
	if dir == "" {
		return found, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("e-mail templates: %w", err)
	}
	for _, e := range entries {
		base, ext, _ := strings.Cut(e.Name(), ".")
		if e.IsDir() || !slices.Contains([]string{extSubject, extText, extHTML}, ext) {
			continue // a README, say
		}
		if !slices.Contains(names, base) {
			return nil, fmt.Errorf("e-mail template %s: unknown name %q (known: %s)",
				filepath.Join(dir, e.Name()), base, strings.Join(names, ", "))
		}
		found[e.Name()] = true
	}
	return found, nil
}

// readTemplate returns the source of file, from dir when override is set,
// else the built-in one, and where it came from.
func readTemplate(dir string, override bool, file string) (src, where string, err error) {
	if override {
		where = filepath.Join(dir, file)
		b, err := os.ReadFile(where)
		if err != nil {
			return "", where, fmt.Errorf("e-mail template: %w", err)
		}
		return string(b), where, nil
	}
	b, err := fs.ReadFile(builtin, "templates/"+file)
	return string(b), "built-in " + file, err
}

func (s *templateSet) parse(ext, file, src string) error {
	var err error
	switch ext {
	case extSubject:
		s.subject, err = texttemplate.New(file).Parse(src)
	case extText:
		s.text, err = texttemplate.New(file).Parse(src)
	case extHTML:
		s.html, err = htmltemplate.New(file).Parse(src)
	}
	return err
}

// check renders the template of ext with sampleData.
func (s *templateSet) check(ext string) error {
	switch ext {
	case extSubject:
		return s.subject.Execute(io.Discard, sampleData)
	case extText:
		return s.text.Execute(io.Discard, sampleData)
	default:
		return s.html.Execute(io.Discard, sampleData)
	}
}

// Render returns e-mail name (Verify, Reset, ...) to to, filled with data.
// The subject is folded onto one line, so data cannot add headers.
func (t *Templates) Render(name, to string, data Data) (Message, error) {
	s, ok := t.set[name]
	if !ok {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknownTemplate, name)
	}
	if data.Product == "" {
		data.Product = "pbe"
	}
	if data.Email == "" {
		data.Email = to
	}
	var subject, text, html bytes.Buffer
	if err := s.subject.Execute(&subject, data); err != nil {
		return Message{}, fmt.Errorf("render e-mail %s: %w", name, err)
	}
	if err := s.text.Execute(&text, data); err != nil {
		return Message{}, fmt.Errorf("render e-mail %s: %w", name, err)
	}
	if err := s.html.Execute(&html, data); err != nil {
		return Message{}, fmt.Errorf("render e-mail %s: %w", name, err)
	}
	return Message{
		To:      to,
		Subject: strings.Join(strings.Fields(subject.String()), " "),
		Text:    text.String(),
		HTML:    html.String(),
	}, nil
}
