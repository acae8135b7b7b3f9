package email

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// longLink is a verification link longer than a quoted-printable line (76
// characters), with "=" in it, which quoted-printable must escape.
const longLink = "http://localhost:8090/api/cp/auth/verify?token=eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiJ1MSIsImF1ZCI6WyJwYmUtdmVyaWZ5Il19.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2gtdG8td3JhcA%3D%3D&x=1"

// selfSigned returns a server TLS config with a fresh self-signed ECDSA
// certificate for 127.0.0.1 and localhost.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// parsed is a message read with net/mail and mime/multipart alone (not
// with smtptest.Parse, so the tests do not check the composer with code
// of the same author's making only).
type parsed struct {
	header mail.Header
	parts  map[string]string // media type -> decoded body
}

func parseMessage(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: got %q %v, want multipart/alternative", msg.Header.Get("Content-Type"), mt, err)
	}
	p := parsed{header: msg.Header, parts: map[string]string{}}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			return p
		}
		if err != nil {
			t.Fatalf("MIME part: %v", err)
		}
		ct, cparams, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if cparams["charset"] != "utf-8" {
			t.Errorf("%s charset: got %q, want utf-8", ct, cparams["charset"])
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("%s part: %v", ct, err)
		}
		p.parts[ct] = string(body)
	}
}

// decodedSubject is the Subject header, decoded.
func (p parsed) decodedSubject(t *testing.T) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", p.header.Get("Subject"), err)
	}
	return s
}
