// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests of code that sends e-mail: it accepts every message,
// checks a password or accepts any, speaks TLS when asked, and keeps what
// it received, parsed, for the test to look at.
//
// A test that only needs a mailbox:
//
//	srv := smtptest.Start(t)
//	o.smtp = srv.URL() // smtp://127.0.0.1:port?tls=none
//	...
//	m := srv.WaitFor(t, "alice@example.com", 10*time.Second)
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Limits of the test server.
const (
	// ioTimeout bounds each read and write of a session, so a stuck client
	// cannot hold the server's Close (and the test's end) for long.
	ioTimeout = 30 * time.Second
	// maxMessageBytes is the largest message accepted.
	maxMessageBytes = 10 << 20
)

// Options configure a test server.
type Options struct {
	// Username and Password, when Username is set, are the only
	// credentials accepted, and a client must log in (AUTH PLAIN) to send.
	// Without them AUTH PLAIN is offered and accepts any credentials.
	Username, Password string
	// TLS, when set, is offered with STARTTLS, or spoken from the first
	// byte when Implicit is set.
	TLS      *tls.Config
	Implicit bool
}

// Received is one message as the server got it.
type Received struct {
	// From and To are the envelope (MAIL FROM, RCPT TO).
	From string
	To   []string
	// Raw is the message as sent, headers and body.
	Raw []byte
	// Subject is the decoded Subject header; Text and HTML the decoded
	// text/plain and text/html parts (Text is the body of a message that
	// is not multipart).
	Subject, Text, HTML string
	// TLS tells whether the session was encrypted; User is the name it
	// logged in as ("" if it did not).
	TLS  bool
	User string
}

// Server is a running test SMTP server. Its methods are safe for
// concurrent use.
type Server struct {
	opts Options
	srv  *smtp.Server
	addr string

	mu       sync.Mutex
	messages []Received
	arrived  chan struct{} // closed, and replaced, when a message arrives
}

// Start starts a plain SMTP server on loopback that accepts any
// credentials (or none); it stops when the test ends.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith starts a server with opts on loopback; it stops when the test
// ends.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Implicit && opts.TLS == nil {
		t.Fatal("smtptest: Implicit needs TLS")
	}
	s := &Server{opts: opts, arrived: make(chan struct{})}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true // a test may log in without TLS; the sender decides whether to
	s.srv.ReadTimeout, s.srv.WriteTimeout = ioTimeout, ioTimeout
	s.srv.MaxMessageBytes = maxMessageBytes
	s.srv.ErrorLog = log.New(io.Discard, "", 0) // a client's refusal is the test's business, not stderr's
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Implicit {
		ln = tls.NewListener(ln, opts.TLS)
	} else {
		s.srv.TLSConfig = opts.TLS
	}
	s.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = s.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		_ = ln.Close() // in case Close ran before Serve took the listener
		<-done
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is an smtp:// URL of the server, with its credentials when Options
// has them, that email.ParseSMTPURL accepts: tls=none (allowed to loopback)
// for a server without TLS, ?insecure_skip_verify=true (the certificate is
// the test's own) with STARTTLS, smtps:// for implicit TLS.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr}
	switch {
	case s.opts.TLS == nil:
		u.RawQuery = "tls=none"
	case s.opts.Implicit:
		u.Scheme, u.RawQuery = "smtps", "insecure_skip_verify=true"
	default:
		u.RawQuery = "insecure_skip_verify=true"
	}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	return u.String()
}

// Messages returns what arrived so far, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.messages...)
}

// WaitFor returns the newest message to addr (an envelope recipient,
// compared without case), waiting up to timeout for one to arrive; it
// fails the test if none does.
func (s *Server) WaitFor(t testing.TB, addr string, timeout time.Duration) Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		msgs, arrived := s.messages, s.arrived
		s.mu.Unlock()
		for i := len(msgs) - 1; i >= 0; i-- {
			for _, to := range msgs[i].To {
				if strings.EqualFold(to, addr) {
					return msgs[i]
				}
			}
		}
		select {
		case <-arrived:
		case <-deadline.C:
			t.Fatalf("no e-mail to %s within %s (%d messages to others)", addr, timeout, len(msgs))
		}
	}
}

func (s *Server) add(r Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, r)
	close(s.arrived)
	s.arrived = make(chan struct{})
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

// session is one client connection; go-smtp calls it from one goroutine.
type session struct {
	s    *Server
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		want := ss.s.opts
		if want.Username != "" && (user != want.Username || pass != want.Password) {
			return errors.New("invalid credentials")
		}
		ss.user = user
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && ss.user == "" {
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
	rec.From, rec.To, rec.User = ss.from, ss.to, ss.user
	_, rec.TLS = ss.conn.TLSConnectionState()
	ss.s.add(rec)
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }
