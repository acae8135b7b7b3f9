package main

import (
	"fmt"
	"log/slog"
	"net/mail"
	"path/filepath"

	"github.com/pbe/pbe/email"
)

// validateMail checks the e-mail flags and fills --mail-from's default.
func (o *serveOptions) validateMail() error {
	if o.mailFrom == "" {
		o.mailFrom = "pbe <noreply@" + o.domain + ">"
	}
	if _, err := mail.ParseAddress(o.mailFrom); err != nil {
		return fmt.Errorf("--mail-from %q: want an address such as 'Acme <noreply@example.com>'", o.mailFrom)
	}
	if o.smtp != "" {
		if _, err := email.ParseSMTPURL(o.smtp); err != nil {
			return fmt.Errorf("--smtp: %w", err)
		}
	}
	if o.defaultMaxTenants < 0 {
		return fmt.Errorf("--default-max-tenants must not be negative")
	}
	return nil
}

// newMailer returns the platform's e-mail sender and templates: SMTP when
// --smtp is set, else .eml files in {dir}/mail (and the log).
func newMailer(o *serveOptions, dir string, logger *slog.Logger) (email.Sender, *email.Templates, error) {
	templates, err := email.LoadTemplates(o.mailTemplates)
	if err != nil {
		return nil, nil, err
	}
	if o.smtp == "" {
		return email.NewDirSender(filepath.Join(dir, "mail"), o.mailFrom, logger), templates, nil
	}
	cfg, err := email.ParseSMTPURL(o.smtp)
	if err != nil {
		return nil, nil, fmt.Errorf("--smtp: %w", err)
	}
	sender, err := email.NewSMTPSender(cfg, o.mailFrom)
	if err != nil {
		return nil, nil, err
	}
	return sender, templates, nil
}
