// Package storage is pbe's object store: where every tenant's durable copy
// lives. It defines the ObjectStore contract, the key layout, and the
// Litestream integration that streams each tenant database into the store.
//
// Backends live in subpackages (file/, s3/) and register a URL scheme with
// Register; this package never imports them. Every key is built from a
// tenant id that has passed cluster validation, so no key can escape
// tenants/{id}/.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/benbjohnson/litestream"

	"github.com/pbe/pbe/cluster"
)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("object not found")

// ObjectStore is a flat key space of immutable-ish objects. Keys use "/" as
// separator and never start with "/". Implementations are safe for
// concurrent use.
type ObjectStore interface {
	// Put stores data at key, replacing what was there. It returns once the
	// object is durable.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object at key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// PutFile stores the content of the local file at path at key, without
	// holding it in memory (an archive can be large).
	PutFile(ctx context.Context, key, path string) error
	// Open returns a reader of the object at key, or ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object at key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the keys under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// DeletePrefix removes every object under prefix. Removing nothing is
	// not an error.
	DeletePrefix(ctx context.Context, prefix string) error
	// ReplicaClient returns a Litestream replica client that keeps its files
	// under prefix.
	ReplicaClient(prefix string) (litestream.ReplicaClient, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// String describes the store without secrets.
	String() string
}

// Exists reports whether s holds an object at key, without reading it
// (a backup can be large).
func Exists(ctx context.Context, s ObjectStore, key string) (bool, error) {
	keys, err := s.List(ctx, key)
	if err != nil {
		return false, err
	}
	return slices.Contains(keys, key), nil
}

// ClassStore is implemented by stores that have storage classes (S3).
// PutClass is Put with the object written in storage class class ("" is
// the store's default). A store whose server refuses the class writes the
// object in its default class instead: the class is a cost hint, never a
// reason to fail.
type ClassStore interface {
	PutClass(ctx context.Context, key string, data []byte, class string) error
}

// FileClassStore is ClassStore for PutFile.
type FileClassStore interface {
	PutFileClass(ctx context.Context, key, path, class string) error
}

// CopyObject copies the object at from to to, through a temporary file in
// dir (the system's when empty), so that an object of any size costs no
// more memory than a small one.
func CopyObject(ctx context.Context, s ObjectStore, from, to, dir string) error {
	r, err := s.Open(ctx, from)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.CreateTemp(dir, "pbe-copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return s.PutFile(ctx, to, f.Name())
}

// PutFileClass is PutClass for the content of a local file.
func PutFileClass(ctx context.Context, s ObjectStore, key, path, class string) error {
	if cs, ok := s.(FileClassStore); ok && class != "" {
		return cs.PutFileClass(ctx, key, path, class)
	}
	return s.PutFile(ctx, key, path)
}

// PutClass stores data at key in storage class class where s has storage
// classes, and with a plain Put elsewhere (a local directory has none).
func PutClass(ctx context.Context, s ObjectStore, key string, data []byte, class string) error {
	if cs, ok := s.(ClassStore); ok && class != "" {
		return cs.PutClass(ctx, key, data, class)
	}
	return s.Put(ctx, key, data)
}

// LocalDirStore is implemented by stores that are a directory on this
// machine. LocalDir returns the directory that holds the objects under
// prefix, so a tenant node can keep uploaded files in the store directly.
type LocalDirStore interface {
	LocalDir(prefix string) (string, error)
}

// FilesPrefix is where tenant id's uploaded files live.
func FilesPrefix(id string) (string, error) {
	p, err := TenantPrefix(id)
	if err != nil {
		return "", err
	}
	return p + "files", nil
}

// Opener opens a store from its URL.
type Opener func(ctx context.Context, u *url.URL) (ObjectStore, error)

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes a backend available for URLs with the given scheme. It is
// meant to be called from a backend package's init.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[scheme] = open
}

// Open opens the object store named by rawURL (file:///path,
// s3://bucket/prefix?endpoint=...). The backend for its scheme must be
// registered (imported) by the caller.
func Open(ctx context.Context, rawURL string) (ObjectStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("object store url: %w", err)
	}
	openersMu.RLock()
	open := openers[u.Scheme]
	openersMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("object store url %q: unsupported scheme %q (want one of %v)", redact(u), u.Scheme, schemes())
	}
	return open(ctx, u)
}

func schemes() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	var s []string
	for k := range openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.Redacted()
}

// TenantPrefix is the prefix of everything stored for tenant id.
func TenantPrefix(id string) (string, error) {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return "", err
	}
	return "tenants/" + id + "/", nil
}

// ReplicaPrefix is where the Litestream replica of one tenant database
// (data.db, auxiliary.db, ...) is written by the owner at epoch.
func ReplicaPrefix(id string, epoch uint64, db string) (string, error) {
	p, err := TenantPrefix(id)
	if err != nil {
		return "", err
	}
	switch db {
	case "data.db", "auxiliary.db", "hooks.db":
	default:
		return "", fmt.Errorf("replica prefix: unknown database %q", db)
	}
	return p + "litestream/" + strconv.FormatUint(epoch, 10) + "/" + db, nil
}

// MetadataKey is the tenant's metadata object: its presence means the
// tenant has been written to the store at least once.
func MetadataKey(id string) (string, error) {
	p, err := TenantPrefix(id)
	if err != nil {
		return "", err
	}
	return p + "metadata.json", nil
}
