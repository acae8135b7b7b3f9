package email

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TLSMode says how an SMTP connection is encrypted.
type TLSMode string

// TLS modes of an SMTP connection.
const (
	// TLSStartTLS upgrades the connection with STARTTLS and refuses a
	// server that does not offer it. The default of smtp://.
	TLSStartTLS TLSMode = "starttls"
	// TLSOpportunistic upgrades with STARTTLS when the server offers it
	// and otherwise sends in the clear, but never sends credentials in the
	// clear.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSImplicit speaks TLS from the first byte. The mode of smtps://.
	TLSImplicit TLSMode = "tls"
	// TLSNone never encrypts, credentials included; allowed only to a
	// loopback address (a local relay, a test server).
	TLSNone TLSMode = "none"
)

// Default ports and the default bound on one Send.
const (
	// DefaultSubmissionPort is the port of smtp:// without one (RFC 6409).
	DefaultSubmissionPort = "587"
	// DefaultImplicitTLSPort is the port of smtps:// without one (RFC 8314).
	DefaultImplicitTLSPort = "465"
	// DefaultTimeout bounds one Send, from dialling to QUIT, when the
	// config gives none; the caller's context can only shorten it.
	DefaultTimeout = 30 * time.Second
)

// SMTPConfig says how to reach an SMTP server. Build it with ParseSMTPURL;
// its String form hides the password.
type SMTPConfig struct {
	Host, Port         string
	Username, Password string // empty Username: no AUTH
	TLS                TLSMode
	// InsecureSkipVerify accepts any server certificate: for tests only.
	InsecureSkipVerify bool
	// Timeout bounds one Send (DefaultTimeout when zero).
	Timeout time.Duration
}

// ParseSMTPURL reads an SMTP server URL:
//
//	smtp://user:pass@host:port   STARTTLS required, port 587 by default
//	smtps://user:pass@host:port  implicit TLS, port 465 by default
//
// with optional query parameters tls=starttls|opportunistic|none (smtp://
// only; none is allowed only to a loopback address) and
// insecure_skip_verify=true (accept any certificate, for tests only). The
// user and password are URL-decoded: write "@" as %40, ":" as %3A. Errors
// never include the password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.URL would repeat the password
		}
		return SMTPConfig{}, fmt.Errorf("SMTP URL: %w", err)
	}
	c := SMTPConfig{Host: u.Hostname(), Port: u.Port(), Timeout: DefaultTimeout}
	switch u.Scheme {
	case "smtp":
		c.TLS = TLSStartTLS
		if c.Port == "" {
			c.Port = DefaultSubmissionPort
		}
	case "smtps":
		c.TLS = TLSImplicit
		if c.Port == "" {
			c.Port = DefaultImplicitTLSPort
		}
	default:
		return SMTPConfig{}, fmt.Errorf("SMTP URL %s: the scheme must be smtp:// (STARTTLS) or smtps:// (TLS)", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return SMTPConfig{}, fmt.Errorf("SMTP URL %s: unexpected path %q", u.Redacted(), u.Path)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if err := c.parseQuery(u); err != nil {
		return SMTPConfig{}, fmt.Errorf("SMTP URL %s: %w", u.Redacted(), err)
	}
	if err := c.Validate(); err != nil {
		return SMTPConfig{}, fmt.Errorf("SMTP URL %s: %w", u.Redacted(), err)
	}
	return c, nil
}

// parseQuery applies u's query parameters to c.
func (c *SMTPConfig) parseQuery(u *url.URL) error {
	for k, v := range u.Query() {
		switch k {
		case "tls":
			m := TLSMode(v[len(v)-1])
			if u.Scheme == "smtps" && m != TLSImplicit {
				return fmt.Errorf("smtps:// is always TLS; drop ?tls=%s", m)
			}
			c.TLS = m
		case "insecure_skip_verify":
			b, err := strconv.ParseBool(v[len(v)-1])
			if err != nil {
				return fmt.Errorf("insecure_skip_verify must be true or false, not %q", v[len(v)-1])
			}
			c.InsecureSkipVerify = b
		default:
			return fmt.Errorf("unknown parameter %q (known: tls, insecure_skip_verify)", k)
		}
	}
	return nil
}

// Validate reports what is wrong with c, naming the field.
func (c SMTPConfig) Validate() error {
	if c.Host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(c.Port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a port number", c.Port)
	}
	if !slices.Contains([]TLSMode{TLSStartTLS, TLSOpportunistic, TLSImplicit, TLSNone}, c.TLS) {
		return fmt.Errorf("tls must be starttls, opportunistic or none, not %q", c.TLS)
	}
	if c.TLS == TLSNone && !isLoopback(c.Host) {
		return fmt.Errorf("tls=none is allowed only to a loopback address, not %s (use STARTTLS or smtps://)", c.Host)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("negative timeout %s", c.Timeout)
	}
	return nil
}

// String is c as a URL without the password, for logs.
func (c SMTPConfig) String() string {
	u := url.URL{Scheme: "smtp", Host: net.JoinHostPort(c.Host, c.Port)}
	q := url.Values{}
	if c.TLS == TLSImplicit {
		u.Scheme = "smtps"
	} else if c.TLS != TLSStartTLS {
		q.Set("tls", string(c.TLS))
	}
	if c.InsecureSkipVerify {
		q.Set("insecure_skip_verify", "true")
	}
	u.RawQuery = q.Encode()
	if c.Username != "" {
		u.User = url.User(c.Username)
	}
	return u.String()
}

// isLoopback reports whether host names this machine: "localhost" or a
// loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
