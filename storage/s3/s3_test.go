package s3_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pbe/pbe/internal/s3test"
	"github.com/pbe/pbe/storage"
	_ "github.com/pbe/pbe/storage/s3"
	"github.com/pbe/pbe/storage/storagetest"
)

func TestStore_Contract(t *testing.T) {
	srv := s3test.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.ObjectStore {
		s, err := storage.Open(context.Background(), srv.URL(t, "pbe/test"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestStore_Unreachable(t *testing.T) {
	srv := s3test.Start(t)
	s, err := storage.Open(context.Background(), srv.URL(t, "x"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("ping succeeded with the server down")
	}
	if _, err := s.Get(context.Background(), "a"); err == nil || err == storage.ErrNotFound {
		t.Fatalf("get with the server down: got %v, want a transport error", err)
	}
	srv.Restart()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

// TestStore_PutClass writes archives with a storage class through the real
// S3-compatible server of the tests (versitygw accepts any class and
// keeps none), and through a proxy that refuses classes: the object is
// written either way, and a refused class is not sent again.
func TestStore_PutClass(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		refuse bool
		class  string
		want   []string // the classes of the two PutObject requests
	}{
		{"accepted", false, "STANDARD_IA", []string{"STANDARD_IA", "STANDARD_IA"}},
		{"none", false, "", []string{"", ""}},
		{"refused, then not sent again", true, "STANDARD_IA", []string{"STANDARD_IA", "", ""}},
	} {
		for _, fromFile := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/from a file=%v", tc.name, fromFile), func(t *testing.T) {
				p := s3test.StartProxy(t, srv)
				p.RefuseClasses(tc.refuse)
				s, err := storage.Open(ctx, p.URL(t, "pbe/classes"))
				if err != nil {
					t.Fatal(err)
				}
				for _, key := range []string{"one.tar.gz", "two.tar.gz"} {
					if fromFile {
						src := filepath.Join(t.TempDir(), key)
						if err := os.WriteFile(src, []byte(key), 0o600); err != nil {
							t.Fatal(err)
						}
						err = storage.PutFileClass(ctx, s, key, src, tc.class)
					} else {
						err = storage.PutClass(ctx, s, key, []byte(key), tc.class)
					}
					if err != nil {
						t.Fatalf("put %s: %v", key, err)
					}
					if got, err := s.Get(ctx, key); err != nil || string(got) != key {
						t.Fatalf("Get %s: got %q, %v; want the object", key, got, err)
					}
				}
				var got []string
				for _, put := range p.Puts() {
					got = append(got, put.Class)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("storage classes sent: got %q, want %q", got, tc.want)
				}
			})
		}
	}
}
