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
	"time"
)

// DirSender is the development sender: it writes each message as an .eml
// file in a directory (mode 0600) and logs its links.
type DirSender struct {
	dir    string
	from   string
	logger *slog.Logger
}

// NewDirSender returns a sender writing to dir as from.
func NewDirSender(dir, from string, logger *slog.Logger) *DirSender {
	return &DirSender{dir: dir, from: from, logger: logger}
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+`)

// Send writes m to a new file (temp + rename) and logs it.
func (d *DirSender) Send(_ context.Context, m Message) error {
	now := time.Now().UTC()
	data, err := compose(d.from, m, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	name := filepath.Join(d.dir, now.Format("20060102T150405Z")+"-"+hex.EncodeToString(rnd)+".eml")
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write e-mail: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write e-mail: %w", err)
	}
	d.logger.Info("e-mail written (no SMTP server configured)", "to", m.To, "subject", m.Subject, "path", name,
		"links", linkPattern.FindAllString(m.Text, -1))
	return nil
}
