package controlplane

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pbe/pbe/email"
)

// mailTimeout bounds sending one e-mail.
const mailTimeout = time.Minute

// mailer sends the platform's e-mails in the background: an answer never
// waits for (or reveals, by its timing) an e-mail being sent.
type mailer struct {
	send      email.Sender
	templates *email.Templates
	logger    *slog.Logger
	wg        sync.WaitGroup
}

func newMailer(cfg Config, logger *slog.Logger) *mailer {
	m := &mailer{send: cfg.Mail, templates: cfg.MailTemplates, logger: logger}
	if m.templates == nil {
		t, err := email.LoadTemplates("")
		if err != nil {
			panic("built-in e-mail templates: " + err.Error())
		}
		m.templates = t
	}
	return m
}

// mail renders template name for to and sends it in the background.
func (m *mailer) mail(name, to string, data email.Data) {
	msg, err := m.templates.Render(name, to, data)
	if err != nil {
		m.logger.Error("render e-mail", "template", name, "error", err)
		return
	}
	if m.send == nil {
		m.logger.Info("e-mail not sent: no mail sender configured", "template", name, "to", to, "subject", msg.Subject)
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), mailTimeout)
		defer cancel()
		if err := m.send.Send(ctx, msg); err != nil {
			m.logger.Error("send e-mail", "template", name, "to", to, "error", err)
		}
	}()
}

// wait waits for e-mails being sent.
func (m *mailer) wait() { m.wg.Wait() }
