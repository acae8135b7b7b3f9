package smtptest

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// Parse reads a message (what a server received, or an .eml file): its
// decoded subject and its decoded text and HTML parts. What it cannot
// parse it leaves empty; Raw is always set.
func Parse(raw []byte) Received {
	r := Received{Raw: raw}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return r
	}
	r.Subject, _ = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		r.Text = readPart(m.Body, m.Header.Get("Content-Transfer-Encoding"))
		return r
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart() // raw: the transfer encoding is ours to decode
		if err != nil {
			return r
		}
		body := readPart(p, p.Header.Get("Content-Transfer-Encoding"))
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			r.Text = body
		case "text/html":
			r.HTML = body
		}
	}
}

func readPart(r io.Reader, encoding string) string {
	if strings.EqualFold(encoding, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}
