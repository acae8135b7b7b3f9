// Package email sends the platform's e-mails to customers: address
// verification, password reset, "someone tried to sign up with your
// address", "your password was changed" and quota-request decisions.
//
// # Senders
//
// A Sender delivers one Message. There are two:
//
//   - SMTPSender, configured with a URL (see ParseSMTPURL):
//     smtp://user:pass@host:587 upgrades with STARTTLS and refuses a server
//     that does not offer it, smtps://user:pass@host:465 speaks TLS from the
//     first byte, and ?tls=none sends in the clear, to a loopback address
//     only (a local relay, or a test server). Credentials go out with AUTH
//     PLAIN and never over an unencrypted connection except with tls=none.
//   - DirSender, the development default when no SMTP server is configured:
//     it writes each message as an .eml file into a directory and logs its
//     recipient, subject, file and links, so a developer can click the
//     verification link from the log.
//
// Both compose the same message: multipart/alternative with a text/plain
// and a text/html part, UTF-8, quoted-printable, with Date, Message-ID,
// From, To and Subject headers. A header value holding a line break is
// refused (ErrHeaderInjection), so no input can add headers or recipients.
//
// # Templates
//
// Templates renders a message from a template name (Verify, Reset,
// SignupExists, PasswordChanged, QuotaDecision) and Data. Each name has
// three built-in templates embedded in the binary: {name}.subject and
// {name}.txt (text/template) and {name}.html (html/template, which escapes
// what it is given). An operator overrides any of them by putting a file of
// the same name in the override directory (pbe serve --mail-templates);
// the files not there keep the built-in text. LoadTemplates parses every
// template and renders it once with sample data, so a template that does
// not parse or names a field Data lacks stops the start-up, naming the
// file, instead of failing the first customer who signs up.
package email

import (
	"context"
	"errors"
)

// Message is one e-mail to one recipient, with a plain-text and an HTML
// rendering of the same content.
type Message struct {
	// To is the recipient: "alice@example.com" or "Alice <alice@example.com>".
	To string
	// Subject is the subject line, any UTF-8 (it is encoded as needed).
	Subject string
	// Text is the text/plain part; HTML the text/html part. An empty part
	// is left out.
	Text, HTML string
}

// Sender delivers messages.
//
// Send returns nil once the message is delivered to the next hop (the SMTP
// server accepted it, or the file is written); it returns when ctx is done
// at the latest. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrHeaderInjection is returned by Send for a message whose To or Subject,
// or a sender whose From, contains a line break: sending it could add
// headers or recipients. Such a message is never sent, in part or whole.
var ErrHeaderInjection = errors.New("e-mail header contains a line break")
