package email

import (
	"bytes"
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

// envelope is who a message is from and to, as bare addresses for the SMTP
// MAIL FROM and RCPT TO commands.
type envelope struct{ from, to string }

// checkHeader returns ErrHeaderInjection if a value holds a line break.
func checkHeader(values ...string) error {
	for _, v := range values {
		if strings.ContainsAny(v, "\r\n") {
			return ErrHeaderInjection
		}
	}
	return nil
}

// parseFrom checks a sender address such as "pbe <noreply@example.com>".
func parseFrom(from string) (*mail.Address, error) {
	if err := checkHeader(from); err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("sender %q: %w", from, err)
	}
	return a, nil
}

// compose returns m from from in RFC 5322 form, with CRLF line endings:
// multipart/alternative of a text/plain and a text/html part, each UTF-8
// and quoted-printable (which keeps lines short without changing what a
// decoding reader sees, long links included).
func compose(from string, m Message, now time.Time) (envelope, []byte, error) {
	if err := checkHeader(m.To, m.Subject); err != nil {
		return envelope{}, nil, err
	}
	fromAddr, err := parseFrom(from)
	if err != nil {
		return envelope{}, nil, err
	}
	toAddr, err := mail.ParseAddress(m.To)
	if err != nil {
		return envelope{}, nil, fmt.Errorf("recipient %q: %w", m.To, err)
	}
	if m.Text == "" && m.HTML == "" {
		return envelope{}, nil, errors.New("e-mail has neither a text nor an HTML part")
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := writePart(mw, "text/plain", m.Text); err != nil {
		return envelope{}, nil, err
	}
	if err := writePart(mw, "text/html", m.HTML); err != nil {
		return envelope{}, nil, err
	}
	if err := mw.Close(); err != nil {
		return envelope{}, nil, err
	}
	var out bytes.Buffer
	for _, h := range [][2]string{
		{"From", fromAddr.String()},
		{"To", toAddr.String()},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", messageID(fromAddr.Address)},
		{"Auto-Submitted", "auto-generated"}, // RFC 3834: no auto-replies, please
		{"MIME-Version", "1.0"},
		{"Content-Type", "multipart/alternative; boundary=" + mw.Boundary()},
	} {
		fmt.Fprintf(&out, "%s: %s\r\n", h[0], h[1])
	}
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return envelope{from: fromAddr.Address, to: toAddr.Address}, out.Bytes(), nil
}

// writePart adds a quoted-printable part of type typ, unless content is
// empty.
func writePart(mw *multipart.Writer, typ, content string) error {
	if content == "" {
		return nil
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", typ+"; charset=utf-8")
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	w, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(content)); err != nil {
		return err
	}
	return qp.Close()
}

// messageID returns a new, globally unique Message-ID in the domain of the
// sender's address.
func messageID(fromAddress string) string {
	id := make([]byte, 16)
	_, _ = rand.Read(id) // crypto/rand.Read never fails
	domain := fromAddress[strings.LastIndexByte(fromAddress, '@')+1:]
	return "<" + hex.EncodeToString(id) + "@" + domain + ">"
}
