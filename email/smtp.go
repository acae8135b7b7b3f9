package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"strconv"
	"time"
)

// TLS modes of an SMTP connection.
const (
	// TLSStartTLS upgrades the connection with STARTTLS and refuses a
	// server that does not offer it (smtp:// default).
	TLSStartTLS = "starttls"
	// TLSOpportunistic upgrades when the server offers STARTTLS.
	TLSOpportunistic = "opportunistic"
	// TLSImplicit speaks TLS from the first byte (smtps://).
	TLSImplicit = "tls"
	// TLSNone never encrypts; allowed only to loopback addresses.
	TLSNone = "none"
)

// SMTPConfig says how to reach an SMTP server.
type SMTPConfig struct {
	Host, Port         string
	Username, Password string
	TLS                string
	InsecureSkipVerify bool
	Timeout            time.Duration
}

// ParseSMTPURL reads smtp://user:pass@host:port?tls=starttls|opportunistic|none
// (port 587 by default) or smtps://user:pass@host:port (implicit TLS, port
// 465 by default). ?insecure_skip_verify=true accepts any certificate (for
// testing only).
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return SMTPConfig{}, fmt.Errorf("SMTP URL: %w", err)
	}
	c := SMTPConfig{Host: u.Hostname(), Port: u.Port(), Timeout: 30 * time.Second}
	switch u.Scheme {
	case "smtp":
		c.TLS = TLSStartTLS
		if c.Port == "" {
			c.Port = "587"
		}
	case "smtps":
		c.TLS = TLSImplicit
		if c.Port == "" {
			c.Port = "465"
		}
	default:
		return SMTPConfig{}, fmt.Errorf("SMTP URL %q: scheme must be smtp:// (STARTTLS) or smtps:// (TLS)", u.Redacted())
	}
	if c.Host == "" {
		return SMTPConfig{}, fmt.Errorf("SMTP URL %q has no host", u.Redacted())
	}
	if n, err := strconv.Atoi(c.Port); err != nil || n < 1 || n > 65535 {
		return SMTPConfig{}, fmt.Errorf("SMTP URL %q: bad port", u.Redacted())
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q := u.Query()
	if m := q.Get("tls"); m != "" {
		if u.Scheme == "smtps" && m != TLSImplicit {
			return SMTPConfig{}, fmt.Errorf("SMTP URL: smtps:// is always TLS; drop ?tls=%s", m)
		}
		switch m {
		case TLSStartTLS, TLSOpportunistic, TLSNone, TLSImplicit:
			c.TLS = m
		default:
			return SMTPConfig{}, fmt.Errorf("SMTP URL: tls must be starttls, opportunistic or none, not %q", m)
		}
	}
	c.InsecureSkipVerify = q.Get("insecure_skip_verify") == "true"
	if c.TLS == TLSNone && !isLoopback(c.Host) {
		return SMTPConfig{}, fmt.Errorf("SMTP URL: tls=none is allowed only to a loopback address, not %s", c.Host)
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SMTPSender sends through one SMTP server, one connection per message.
type SMTPSender struct {
	cfg  SMTPConfig
	from string
}

// NewSMTPSender returns a sender with envelope and header sender from.
func NewSMTPSender(cfg SMTPConfig, from string) (*SMTPSender, error) {
	if _, err := mail.ParseAddress(from); err != nil {
		return nil, fmt.Errorf("mail from %q: %w", from, err)
	}
	if err := checkHeader(from); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &SMTPSender{cfg: cfg, from: from}, nil
}

// Send delivers m.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	data, err := compose(s.from, m, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(s.cfg.Host, s.cfg.Port)
	tlsConf := &tls.Config{ServerName: s.cfg.Host, InsecureSkipVerify: s.cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	var conn net.Conn
	d := &net.Dialer{}
	if s.cfg.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConf}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("connect to SMTP server %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("SMTP greeting from %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	encrypted := s.cfg.TLS == TLSImplicit
	if s.cfg.TLS == TLSStartTLS || s.cfg.TLS == TLSOpportunistic {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConf); err != nil {
				return fmt.Errorf("STARTTLS with %s: %w", addr, err)
			}
			encrypted = true
		} else if s.cfg.TLS == TLSStartTLS {
			return fmt.Errorf("SMTP server %s does not offer STARTTLS; use ?tls=opportunistic to send unencrypted", addr)
		}
	}
	if s.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("SMTP server %s does not offer AUTH but credentials were given", addr)
		}
		if !encrypted && !isLoopback(s.cfg.Host) {
			return errors.New("refusing to send SMTP credentials over an unencrypted connection")
		}
		if err := c.Auth(plainAuth{username: s.cfg.Username, password: s.cfg.Password}); err != nil {
			return fmt.Errorf("SMTP login to %s: %w", addr, err)
		}
	}
	from, _ := mail.ParseAddress(s.from)
	to, _ := mail.ParseAddress(m.To)
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("SMTP MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("SMTP RCPT TO %s: %w", to.Address, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	return c.Quit()
}

// plainAuth is SASL PLAIN. Unlike net/smtp's PlainAuth it leaves the
// decision to send credentials on this connection to Send, which allows
// an unencrypted one only to loopback.
type plainAuth struct{ username, password string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.username + "\x00" + a.password), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected SMTP AUTH challenge")
	}
	return nil, nil
}
