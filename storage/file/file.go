// Package file is the local-directory backend of the object store
// (file:///path). It is the embedded default: durable as the disk it is on,
// and shared by every process that mounts the same directory.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/benbjohnson/litestream"
	lsfile "github.com/benbjohnson/litestream/file"

	"github.com/pbe/pbe/internal/atomicfile"
	"github.com/pbe/pbe/storage"
)

func init() {
	storage.Register("file", func(_ context.Context, u *url.URL) (storage.ObjectStore, error) {
		p := u.Path
		if u.Host != "" && u.Host != "localhost" {
			// file://relative/dir is read as a relative path, as users write it.
			p = filepath.Join(u.Host, u.Path)
		}
		if p == "" {
			return nil, fmt.Errorf("file object store url %q has no path", u.String())
		}
		return New(p)
	})
}

// Store keeps objects as files under a root directory.
type Store struct {
	root string
}

// New returns a store rooted at dir, creating it.
func New(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file object store: %w", err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("file object store: %w", err)
	}
	return &Store{root: abs}, nil
}

// Root is the directory the store writes under.
func (s *Store) Root() string { return s.root }

func (s *Store) String() string { return "file://" + s.root }

// path maps a key to a file path, refusing keys that would leave the root.
func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("invalid object key %q", key)
	}
	for _, part := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("invalid object key %q", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put writes data with temp file + fsync + rename, then fsyncs the directory.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	return atomicfile.Write(p, data, 0o640)
}

// PutFile copies the file at src to key, as Put does.
func (s *Store) PutFile(ctx context.Context, key, src string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	return atomicfile.Copy(p, f, 0o640)
}

// Open opens the object at key.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storage.ErrNotFound
	}
	return f, err
}

// Get reads the object at key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	f, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Delete removes the file at key.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// List walks the directory under prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	p, err := s.path(prefix)
	if err != nil {
		return nil, err
	}
	var keys []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.Contains(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return ctx.Err()
	})
	sort.Strings(keys)
	return keys, err
}

// DeletePrefix removes the directory under prefix.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	p, err := s.path(prefix)
	if err != nil {
		return err
	}
	return os.RemoveAll(p)
}

// ReplicaClient returns Litestream's own file replica client under prefix.
func (s *Store) ReplicaClient(prefix string) (litestream.ReplicaClient, error) {
	p, err := s.path(prefix)
	if err != nil {
		return nil, err
	}
	return lsfile.NewReplicaClient(p), nil
}

// LocalDir returns the directory of the objects under prefix.
func (s *Store) LocalDir(prefix string) (string, error) {
	return s.path(prefix)
}

// Ping checks that the root is a writable directory.
func (s *Store) Ping(ctx context.Context) error {
	fi, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("file object store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("file object store: %s is not a directory", s.root)
	}
	return nil
}
