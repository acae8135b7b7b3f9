package s3_test

import (
	"context"
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
