package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"time"
)

// Errors of SMTPSender.Send that say the server and the configured TLS mode
// do not fit; sending again will not help.
var (
	// ErrNoSTARTTLS is returned when STARTTLS is required (smtp://, the
	// default) and the server does not offer it.
	ErrNoSTARTTLS = errors.New("SMTP server does not offer STARTTLS")
	// ErrUnencryptedAuth is returned when the URL has credentials, the
	// mode is opportunistic and the server offers no STARTTLS: the
	// password is not sent in the clear.
	ErrUnencryptedAuth = errors.New("refusing to send SMTP credentials over an unencrypted connection")
)

// SMTPSender sends through one SMTP server, a new connection for each
// message (the platform sends few). It is safe for concurrent use.
type SMTPSender struct {
	cfg  SMTPConfig
	from string
}

// NewSMTPSender returns a sender through the server of cfg with from
// ("pbe <noreply@example.com>") as the From header and envelope sender.
func NewSMTPSender(cfg SMTPConfig, from string) (*SMTPSender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("SMTP config: %w", err)
	}
	if _, err := parseFrom(from); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &SMTPSender{cfg: cfg, from: from}, nil
}

// Send delivers m and returns once the server has accepted it, or when ctx
// is done, or after the config's Timeout, whichever comes first.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	env, data, err := compose(s.from, m, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(s.cfg.Host, s.cfg.Port)
	conn, err := s.dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("connect to SMTP server %s: %w", addr, err)
	}
	// Closing the connection when ctx ends unblocks any read or write;
	// ctx.Err() is set by then, so the error below says why.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := s.deliver(conn, env, data); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("send e-mail via %s: %w (%v)", addr, ctx.Err(), err)
		}
		return fmt.Errorf("send e-mail via %s: %w", addr, err)
	}
	return nil
}

func (s *SMTPSender) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	if s.cfg.TLS == TLSImplicit {
		return (&tls.Dialer{NetDialer: d, Config: s.tlsConfig()}).DialContext(ctx, "tcp", addr)
	}
	return d.DialContext(ctx, "tcp", addr)
}

func (s *SMTPSender) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.cfg.Host, InsecureSkipVerify: s.cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
}

// deliver runs one SMTP session on conn: EHLO, STARTTLS, AUTH, the message
// and QUIT.
func (s *SMTPSender) deliver(conn net.Conn, env envelope, data []byte) error {
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	encrypted, err := s.secure(c)
	if err != nil {
		return err
	}
	if err := s.login(c, encrypted); err != nil {
		return err
	}
	if err := c.Mail(env.from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", env.from, err)
	}
	if err := c.Rcpt(env.to); err != nil {
		return fmt.Errorf("RCPT TO:<%s>: %w", env.to, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// The server has the message now: a failed QUIT must not make the
	// caller send it a second time.
	_ = c.Quit()
	return nil
}

// secure upgrades the session with STARTTLS as the TLS mode asks and
// reports whether it is encrypted.
func (s *SMTPSender) secure(c *smtp.Client) (bool, error) {
	switch s.cfg.TLS {
	case TLSImplicit:
		return true, nil
	case TLSNone:
		return false, nil
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		if s.cfg.TLS == TLSStartTLS {
			return false, fmt.Errorf("%w (use smtps:// if it speaks TLS on another port, or ?tls=opportunistic to send unencrypted)", ErrNoSTARTTLS)
		}
		return false, nil
	}
	if err := c.StartTLS(s.tlsConfig()); err != nil {
		return false, fmt.Errorf("STARTTLS: %w", err)
	}
	return true, nil
}

// login authenticates with AUTH PLAIN when the config has credentials. It
// sends them only over an encrypted session, or in the clear when the mode
// is TLSNone (which Validate allows only to loopback).
func (s *SMTPSender) login(c *smtp.Client, encrypted bool) error {
	if s.cfg.Username == "" {
		return nil
	}
	if !encrypted && s.cfg.TLS != TLSNone {
		return fmt.Errorf("%w: the server offers no STARTTLS", ErrUnencryptedAuth)
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		return errors.New("the SMTP URL has credentials but the server does not offer AUTH")
	}
	if err := c.Auth(plainAuth{username: s.cfg.Username, password: s.cfg.Password}); err != nil {
		return fmt.Errorf("AUTH PLAIN as %q: %w", s.cfg.Username, err)
	}
	return nil
}

// plainAuth is SASL PLAIN (RFC 4616). net/smtp's PlainAuth refuses an
// unencrypted connection to any host but localhost, 127.0.0.1 and ::1; this
// one leaves that decision to login, which allows it only for TLSNone and
// says why when it refuses.
type plainAuth struct{ username, password string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.username + "\x00" + a.password), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected challenge after AUTH PLAIN")
	}
	return nil, nil
}
