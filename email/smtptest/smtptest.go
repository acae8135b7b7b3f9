// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp)
// on loopback for tests: it accepts every message, optionally checks a
// password, optionally speaks TLS, and keeps what it received, parsed.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a test server.
type Options struct {
	// Username and Password, when set, are required (AUTH PLAIN).
	Username, Password string
	// TLS, when set, is offered with STARTTLS (or spoken from the first
	// byte with Implicit).
	TLS      *tls.Config
	Implicit bool
	// NoSTARTTLS hides STARTTLS even when TLS is set.
	NoSTARTTLS bool
}

// Received is one message as the server got it.
type Received struct {
	From    string
	To      []string
	Raw     []byte
	Subject string
	Text    string
	HTML    string
}

// Server is a running test SMTP server.
type Server struct {
	opts Options
	srv  *smtp.Server
	addr string

	mu       sync.Mutex
	messages []Received
	arrived  chan struct{}
}

// Start starts a plain SMTP server without authentication.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith starts a server with opts; it stops when the test ends.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, arrived: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	s.srv.MaxMessageBytes = 10 << 20
	if opts.TLS != nil && !opts.NoSTARTTLS {
		s.srv.TLSConfig = opts.TLS
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Implicit {
		ln = tls.NewListener(ln, opts.TLS)
	}
	s.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close(); <-done })
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is an smtp:// URL for the server, with its credentials, that the
// platform's sender accepts for loopback without TLS.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr, RawQuery: "tls=none"}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	return u.String()
}

// Messages returns what arrived so far.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.messages...)
}

// WaitFor returns the newest message to addr, waiting up to timeout for
// one to arrive; it fails the test if none does.
func (s *Server) WaitFor(t testing.TB, addr string, timeout time.Duration) Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := s.Messages()
		for i := len(msgs) - 1; i >= 0; i-- {
			for _, to := range msgs[i].To {
				if strings.EqualFold(to, addr) {
					return msgs[i]
				}
			}
		}
		select {
		case <-s.arrived:
		case <-deadline.C:
			t.Fatalf("no e-mail to %s within %s (got %d messages)", addr, timeout, len(msgs))
		}
	}
}

func (s *Server) add(r Received) {
	s.mu.Lock()
	s.messages = append(s.messages, r)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s      *Server
	authed bool
	from   string
	to     []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.Username || pass != ss.s.opts.Password {
			return errors.New("invalid credentials")
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	rec := Parse(raw)
	rec.From, rec.To = ss.from, ss.to
	ss.s.add(rec)
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// Parse reads a message (an .eml file, say): its subject and its text and
// HTML parts, decoded.
func Parse(raw []byte) Received {
	r := Received{Raw: raw}
	parse(&r)
	return r
}

// parse fills in the subject and the text and HTML parts of a message.
func parse(r *Received) {
	m, err := mail.ReadMessage(bytes.NewReader(r.Raw))
	if err != nil {
		return
	}
	dec := new(mime.WordDecoder)
	r.Subject, _ = dec.DecodeHeader(m.Header.Get("Subject"))
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, _ := io.ReadAll(decodePart(m.Body, m.Header.Get("Content-Transfer-Encoding")))
		r.Text = string(body)
		return
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return
		}
		body, _ := io.ReadAll(decodePart(p, p.Header.Get("Content-Transfer-Encoding")))
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			r.Text = string(body)
		case "text/html":
			r.HTML = string(body)
		}
	}
}

func decodePart(r io.Reader, encoding string) io.Reader {
	if strings.EqualFold(encoding, "quoted-printable") {
		return quotedprintable.NewReader(r)
	}
	return r
}
