package storage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// A tenant archive is a gzipped tar whose layout is a PocketBase data
// directory, so that stock PocketBase opens it (`pocketbase serve
// --dir pb_data`):
//
//	pb_data/data.db
//	pb_data/auxiliary.db
//	pb_data/storage/{collection}/{record}/{file}
//	pbe-archive.json          what the archive is (ArchiveManifest)
//
// Exports, named backups and imports all use it.

// ArchiveManifest describes an archive.
type ArchiveManifest struct {
	Tenant    string    `json:"tenant"`
	CreatedAt time.Time `json:"created_at"`
	Epoch     uint64    `json:"epoch"`
	Files     int       `json:"files"`
}

// Archive layout names.
const (
	archiveDir      = "pb_data/"
	archiveStorage  = "pb_data/storage/"
	archiveManifest = "pbe-archive.json"
	// MaxArchiveEntry bounds one entry read from an archive (a database).
	MaxArchiveEntry = 16 << 30
)

// archiveDBs are the databases an archive carries.
var archiveDBs = []string{"data.db", "auxiliary.db"}

// WriteArchive writes the archive of a tenant whose databases are in
// dbDir, with the uploaded files under filesPrefix in objects.
func WriteArchive(ctx context.Context, w io.Writer, m ArchiveManifest, dbDir string, objects ObjectStore, filesPrefix string) error {
	// BestSpeed: an archive is made on demand and on a schedule; speed
	// matters more than the last third of compression.
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	now := time.Now().UTC()
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	for _, db := range archiveDBs {
		f, err := os.Open(filepath.Join(dbDir, db))
		if errors.Is(err, os.ErrNotExist) && db != "data.db" {
			continue
		}
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			err = add(archiveDir+db, fi.Size(), f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", db, err)
		}
	}
	if objects != nil && filesPrefix != "" {
		keys, err := objects.List(ctx, filesPrefix+"/")
		if err != nil {
			return fmt.Errorf("list uploaded files: %w", err)
		}
		for _, k := range keys {
			b, err := objects.Get(ctx, k)
			if err != nil {
				return fmt.Errorf("read uploaded file %s: %w", k, err)
			}
			if err := add(archiveStorage+strings.TrimPrefix(k, filesPrefix+"/"), int64(len(b)), strings.NewReader(string(b))); err != nil {
				return err
			}
			m.Files++
		}
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := add(archiveManifest, int64(len(mb)), strings.NewReader(string(mb))); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// ArchiveEntry is one uploaded file of an archive.
type ArchiveEntry struct {
	// Path is relative to pb_data/storage: {collection}/{record}/{file}.
	Path string
	Data []byte
}

// ReadArchive reads an archive: it writes its databases into dbDir (when
// not empty) and passes each uploaded file to file (when not nil). Paths
// are checked: an entry outside the layout, with "..", absolute, or not a
// regular file is an error, and nothing is written outside dbDir.
func ReadArchive(r io.Reader, dbDir string, file func(ArchiveEntry) error) (ArchiveManifest, error) {
	var m ArchiveManifest
	gz, err := gzip.NewReader(r)
	if err != nil {
		return m, fmt.Errorf("not a gzipped tenant archive: %w", err)
	}
	tr := tar.NewReader(gz)
	haveData := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("read archive: %w", err)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg || path.IsAbs(name) || strings.Contains(name, "..") || strings.Contains(name, "\\") || path.Clean(name) != name {
			return m, fmt.Errorf("archive entry %q is not allowed (only regular files under pb_data/)", clipName(name))
		}
		switch {
		case name == archiveManifest:
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
				return m, fmt.Errorf("archive manifest: %w", err)
			}
		case name == archiveDir+"data.db" || name == archiveDir+"auxiliary.db":
			if h.Size > MaxArchiveEntry {
				return m, fmt.Errorf("archive entry %s is too large", name)
			}
			haveData = haveData || name == archiveDir+"data.db"
			if dbDir == "" {
				continue
			}
			if err := writeEntry(filepath.Join(dbDir, path.Base(name)), tr); err != nil {
				return m, err
			}
		case strings.HasPrefix(name, archiveStorage):
			rel := strings.TrimPrefix(name, archiveStorage)
			if strings.Count(rel, "/") != 2 || h.Size > MaxArchiveEntry {
				return m, fmt.Errorf("archive entry %q is not an uploaded file (pb_data/storage/{collection}/{record}/{file})", clipName(name))
			}
			if file == nil {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return m, err
			}
			if err := file(ArchiveEntry{Path: rel, Data: b}); err != nil {
				return m, err
			}
		case strings.HasPrefix(name, archiveDir):
			// Other PocketBase files (types.d.ts, backups, logs): not carried.
		default:
			return m, fmt.Errorf("archive entry %q is outside pb_data/", clipName(name))
		}
	}
	if !haveData {
		return m, errors.New("the archive has no pb_data/data.db")
	}
	return m, nil
}

func writeEntry(dst string, r io.Reader) error {
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func clipName(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// CheckDatabase runs PRAGMA integrity_check on the SQLite database at path.
func CheckDatabase(ctx context.Context, path string) error {
	return integrityCheck(ctx, path)
}
