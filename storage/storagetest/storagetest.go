// Package storagetest holds the contract tests every object-store backend
// must pass.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/pbe/pbe/storage"
)

// Run runs the contract tests against a fresh, empty store from open.
func Run(t *testing.T, open func(t *testing.T) storage.ObjectStore) {
	ctx := context.Background()
	t.Run("put get list delete", func(t *testing.T) {
		s := open(t)
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
		for _, k := range []string{"tenants/acme/metadata.json", "tenants/acme/files/a/b.bin", "tenants/acmex/metadata.json"} {
			if err := s.Put(ctx, k, []byte("data of "+k)); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
		}
		got, err := s.Get(ctx, "tenants/acme/files/a/b.bin")
		if err != nil || string(got) != "data of tenants/acme/files/a/b.bin" {
			t.Fatalf("get: got %q, %v", got, err)
		}
		if err := s.Put(ctx, "tenants/acme/metadata.json", []byte("v2")); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, "tenants/acme/metadata.json"); string(got) != "v2" {
			t.Fatalf("overwrite: got %q", got)
		}
		if _, err := s.Get(ctx, "tenants/acme/none"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("missing key: got %v, want ErrNotFound", err)
		}
		if err := s.Put(ctx, "tenants/acme/files/a/b.bin2", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "tenants/acme/files/a/b.bin2"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "tenants/acme/files/a/b.bin2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("after delete: got %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "tenants/acme/files/a/b.bin2"); err != nil {
			t.Fatalf("deleting a missing key: %v", err)
		}
		keys, err := s.List(ctx, "tenants/acme/")
		if want := []string{"tenants/acme/files/a/b.bin", "tenants/acme/metadata.json"}; err != nil || !slices.Equal(keys, want) {
			t.Fatalf("list tenants/acme/: got %v, %v; want %v", keys, err, want)
		}
		if err := s.DeletePrefix(ctx, "tenants/acme/"); err != nil {
			t.Fatal(err)
		}
		if keys, _ := s.List(ctx, "tenants/acme/"); len(keys) != 0 {
			t.Fatalf("after delete: %v", keys)
		}
		if keys, _ := s.List(ctx, "tenants/acmex/"); len(keys) != 1 {
			t.Fatalf("delete of tenants/acme/ touched tenants/acmex/: %v", keys)
		}
		if err := s.DeletePrefix(ctx, "tenants/nothing-here/"); err != nil {
			t.Fatalf("deleting nothing: %v", err)
		}
	})
	t.Run("put a file, open a reader", func(t *testing.T) {
		s := open(t)
		src := filepath.Join(t.TempDir(), "archive.tar.gz")
		data := bytes.Repeat([]byte("0123456789abcdef"), 17<<16) // 17 MiB: more than one part of a multipart upload
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFile(ctx, "tenants/acme/backups/big.tar.gz", src); err != nil {
			t.Fatalf("put file: %v", err)
		}
		rc, err := s.Open(ctx, "tenants/acme/backups/big.tar.gz")
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
		}
		if _, err := s.Open(ctx, "tenants/acme/backups/none.tar.gz"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("open a missing key: got %v, want ErrNotFound", err)
		}
		if err := s.PutFile(ctx, "tenants/acme/backups/x.tar.gz", filepath.Join(t.TempDir(), "missing")); err == nil {
			t.Fatal("put of a missing file succeeded")
		}
	})
	t.Run("exists", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{"tenants/acme/backups/b1.tar.gz", "tenants/acme/backups/b1.tar.gz.old"} {
			if err := s.Put(ctx, k, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		for key, want := range map[string]bool{
			"tenants/acme/backups/b1.tar.gz": true,
			"tenants/acme/backups/b1.tar":    false, // a prefix of keys, not a key
			"tenants/acme/backups":           false, // a "directory"
			"tenants/acme/backups/b2.tar.gz": false,
		} {
			got, err := storage.Exists(ctx, s, key)
			if err != nil || got != want {
				t.Errorf("Exists(%s): got %v, %v; want %v", key, got, err, want)
			}
		}
	})
	t.Run("copy an object", func(t *testing.T) {
		s := open(t)
		data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		if err := s.Put(ctx, "tenants/acme/files/c/r/doc.bin", data); err != nil {
			t.Fatal(err)
		}
		if err := storage.CopyObject(ctx, s, "tenants/acme/files/c/r/doc.bin", "tenants/copy/files/c/r/doc.bin", t.TempDir()); err != nil {
			t.Fatalf("CopyObject: %v", err)
		}
		got, err := s.Get(ctx, "tenants/copy/files/c/r/doc.bin")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the copy: %d bytes, %v; want the %d bytes copied", len(got), err, len(data))
		}
		if err := storage.CopyObject(ctx, s, "tenants/acme/files/none", "tenants/copy/files/none", t.TempDir()); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("copy of a missing object: got %v, want ErrNotFound", err)
		}
	})
	t.Run("many objects", func(t *testing.T) {
		s := open(t)
		const n = 1100 // more than one S3 list page and delete batch
		for i := range n {
			if err := s.Put(ctx, fmt.Sprintf("tenants/many/o%04d", i), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := s.List(ctx, "tenants/many/")
		if err != nil || len(keys) != n || !slices.IsSorted(keys) {
			t.Fatalf("list: %d keys, sorted %v, %v", len(keys), slices.IsSorted(keys), err)
		}
		if err := s.DeletePrefix(ctx, "tenants/many/"); err != nil {
			t.Fatal(err)
		}
		if keys, _ := s.List(ctx, "tenants/many/"); len(keys) != 0 {
			t.Fatalf("after delete: %d keys", len(keys))
		}
	})
	t.Run("keys cannot escape", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{"", "/abs", "../up", "a/../../up", "a//b", "a/./b", "nul\x00"} {
			if err := s.Put(ctx, k, []byte("x")); err == nil {
				t.Errorf("Put(%q) accepted", k)
			}
			if _, err := s.ReplicaClient(k); err == nil {
				t.Errorf("ReplicaClient(%q) accepted", k)
			}
		}
	})
	t.Run("replica client round trip", func(t *testing.T) {
		s := open(t)
		c, err := s.ReplicaClient("tenants/acme/litestream/1/data.db")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Init(ctx); err != nil {
			t.Fatal(err)
		}
		data := ltxFile(t, 1, 1)
		if _, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(data)); err != nil {
			t.Fatalf("write ltx: %v", err)
		}
		itr, err := c.LTXFiles(ctx, 0, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		defer itr.Close()
		if !itr.Next() || itr.Item().MinTXID != 1 {
			t.Fatalf("ltx file not listed: %v", itr.Err())
		}
		rd, err := c.OpenLTXFile(ctx, 0, 1, 1, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		got, _ := io.ReadAll(rd)
		if !bytes.Equal(got, data) {
			t.Fatal("ltx file changed on the way")
		}
		keys, _ := s.List(ctx, "tenants/acme/litestream/1/")
		if len(keys) == 0 || !strings.HasPrefix(keys[0], "tenants/acme/litestream/1/data.db/") {
			t.Fatalf("replica files are not under their prefix: %v", keys)
		}
	})
}

// ltxFile encodes a one-page LTX file for transactions min..max.
func ltxFile(t *testing.T, min, max ltx.TXID) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 1, MinTXID: min, MaxTXID: max, Timestamp: 1700000000000}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
