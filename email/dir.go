package email

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DirSender is the development sender, for when no SMTP server is
// configured: it writes each message as an .eml file into a directory and
// logs its recipient, subject, file and the links of its text part.
//
// The links are verification and password-reset links, which are as good as
// a password while they last: DirSender is for development and tests, and
// its log should be treated like its directory (private to the operator).
// It is safe for concurrent use.
type DirSender struct {
	dir    string
	from   string
	logger *slog.Logger
}

// NewDirSender returns a sender writing to dir (created, mode 0700, on the
// first Send) with from as the From header, logging to logger
// (slog.Default() when nil).
func NewDirSender(dir, from string, logger *slog.Logger) *DirSender {
	if logger == nil {
		logger = slog.Default()
	}
	return &DirSender{dir: dir, from: from, logger: logger}
}

// Dir is the directory the messages are written to.
func (d *DirSender) Dir() string { return d.dir }

// linkPattern finds http(s) links in a text part.
var linkPattern = regexp.MustCompile(`https?://[^\s"'<>]+`)

// Send writes m to a new file {time}-{random}.eml, mode 0600, complete or
// not at all (temp file, fsync, rename), then logs it.
func (d *DirSender) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now().UTC()
	env, data, err := compose(d.from, m, now)
	if err != nil {
		return err
	}
	path, err := d.write(now, data)
	if err != nil {
		return fmt.Errorf("write e-mail into %s: %w", d.dir, err)
	}
	d.logger.Info("e-mail written", "to", env.to, "subject", m.Subject, "path", path, "links", links(m.Text))
	return nil
}

// write stores data in a new file and returns its path.
func (d *DirSender) write(now time.Time, data []byte) (string, error) {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return "", err
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd) // crypto/rand.Read never fails
	path := filepath.Join(d.dir, now.Format("20060102T150405Z")+"-"+hex.EncodeToString(rnd)+".eml")
	f, err := os.CreateTemp(d.dir, ".*.eml.tmp") // mode 0600
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return path, nil
}

// links returns the http(s) links in text, without the punctuation that
// ends a sentence after one.
func links(text string) []string {
	found := linkPattern.FindAllString(text, -1)
	for i, l := range found {
		found[i] = strings.TrimRight(l, ".,;:!?)")
	}
	return found
}
