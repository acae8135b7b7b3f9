package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/storage/storagetest"
)

func TestStore_Objects(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "tenants/acme/metadata.json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "tenants/acme/files/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "tenants/acme/metadata.json")
	if err != nil || string(got) != "{}" {
		t.Fatalf("get: got %q, %v", got, err)
	}
	if _, err := s.Get(ctx, "tenants/acme/nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing key: got %v, want ErrNotFound", err)
	}
	keys, err := s.List(ctx, "tenants/acme")
	if err != nil || !slices.Equal(keys, []string{"tenants/acme/files/a", "tenants/acme/metadata.json"}) {
		t.Fatalf("list: got %v, %v", keys, err)
	}
	if err := s.DeletePrefix(ctx, "tenants/acme/"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.List(ctx, "tenants/acme"); len(keys) != 0 {
		t.Fatalf("after delete: %v", keys)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStore_RefusesKeysOutsideTheRoot(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(filepath.Join(root, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "/etc/passwd", "../escape", "tenants/../../escape", "tenants/./x", "a//b", "a\\b", "a\x00b"} {
		if err := s.Put(ctx, key, []byte("x")); err == nil {
			t.Errorf("Put(%q) accepted", key)
		}
		if _, err := s.ReplicaClient(key); err == nil {
			t.Errorf("ReplicaClient(%q) accepted", key)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "escape")); !os.IsNotExist(err) {
		t.Fatal("a key escaped the store root")
	}
}

func TestOpen_FileURL(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "file://"+dir {
		t.Fatalf("got %s", s)
	}
	if _, err := storage.Open(context.Background(), "ftp://x"); err == nil {
		t.Fatal("unknown scheme accepted")
	}
}

func TestReplicaPrefix_ValidatesIDs(t *testing.T) {
	p, err := storage.ReplicaPrefix("acme", 3, "data.db")
	if err != nil || p != "tenants/acme/litestream/3/data.db" {
		t.Fatalf("got %q, %v", p, err)
	}
	for _, bad := range []string{"../x", "ACME", "a/b", ""} {
		if _, err := storage.ReplicaPrefix(bad, 1, "data.db"); err == nil {
			t.Errorf("id %q accepted", bad)
		}
	}
	if _, err := storage.ReplicaPrefix("acme", 1, "../data.db"); err == nil {
		t.Error("database name accepted")
	}
}

func TestStore_Contract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.ObjectStore {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
