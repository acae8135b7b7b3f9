package main

import (
	"fmt"
	"log/slog"
	"net/mail"
	"path/filepath"

	"github.com/pbe/pbe/email"
)

// validateMail checks the e-mail flags (--smtp, --mail-from,
// --mail-templates) and fills --mail-from's default, pbe
// <noreply@{domain}>. It loads the override templates, so a broken one is
// a usage error naming the file.
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
	if o.mailTemplates != "" {
		if _, err := email.LoadTemplates(o.mailTemplates); err != nil {
			return fmt.Errorf("--mail-templates: %w", err)
		}
	}
	if o.defaultMaxTenants < 0 {
		return fmt.Errorf("--default-max-tenants must not be negative")
	}
	return nil
}

// newMailer returns the platform's e-mail sender and templates: SMTP when
// --smtp is set, else the development sender, which writes .eml files into
// {dataDir}/mail and logs their links. o must have been validated.
func newMailer(o *serveOptions, dataDir string, logger *slog.Logger) (email.Sender, *email.Templates, error) {
	logger = logger.With("component", "mail")
	templates, err := email.LoadTemplates(o.mailTemplates)
	if err != nil {
		return nil, nil, fmt.Errorf("--mail-templates: %w", err)
	}
	if o.smtp == "" {
		dir := filepath.Join(dataDir, "mail")
		logger.Info("no SMTP server (--smtp): e-mails are written as files and their links logged; for development only",
			"dir", dir, "from", o.mailFrom, "templates", o.mailTemplates)
		return email.NewDirSender(dir, o.mailFrom, logger), templates, nil
	}
	cfg, err := email.ParseSMTPURL(o.smtp)
	if err != nil {
		return nil, nil, fmt.Errorf("--smtp: %w", err)
	}
	sender, err := email.NewSMTPSender(cfg, o.mailFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("e-mail sender: %w", err)
	}
	logger.Info("e-mail through SMTP", "smtp", cfg.String(), "from", o.mailFrom, "templates", o.mailTemplates)
	return sender, templates, nil
}
