// Package email sends the platform's e-mails to customers: address
// verification, password reset, "someone tried to sign up with your
// address", "your password was changed" and quota-request decisions.
//
// Two senders: SMTPSender (configured with an smtp:// or smtps:// URL)
// and DirSender, the development default, which writes each message as an
// .eml file and logs its links so a developer can click them. Templates
// render a message from a name and Data: built-in defaults, each of which
// an operator can override with files in a directory ({name}.subject,
// {name}.txt, {name}.html).
package email

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// Message is one e-mail: a text part and an HTML part.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
}

// Sender delivers messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// errHeader is returned for a header value that would inject headers.
var errHeader = errors.New("e-mail header contains a line break")

func checkHeader(values ...string) error {
	for _, v := range values {
		if strings.ContainsAny(v, "\r\n") {
			return errHeader
		}
	}
	return nil
}

// compose returns the RFC 5322 form of m from from: multipart/alternative,
// UTF-8, quoted-printable parts.
func compose(from string, m Message, now time.Time) ([]byte, error) {
	if err := checkHeader(from, m.To, m.Subject); err != nil {
		return nil, err
	}
	if _, err := mail.ParseAddress(m.To); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", m.To, err)
	}
	fromAddr, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ typ, content string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		if part.content == "" {
			continue
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.typ+"; charset=utf-8")
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	domain := fromAddr.Address[strings.LastIndexByte(fromAddr.Address, '@')+1:]
	var out bytes.Buffer
	hdr := [][2]string{
		{"From", fromAddr.String()},
		{"To", m.To},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + hex.EncodeToString(id) + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "multipart/alternative; boundary=" + mw.Boundary()},
	}
	for _, h := range hdr {
		fmt.Fprintf(&out, "%s: %s\r\n", h[0], h[1])
	}
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}
