package controlplane

import (
	"strings"
	"testing"
	"time"
)

func TestConfig_ValidateArchiveStorageClass(t *testing.T) {
	for _, tc := range []struct {
		class   string
		wantErr string // "" for valid
	}{
		{DefaultArchiveStorageClass, ""},
		{"", ""},
		{"ONEZONE_IA", ""},
		{"GLACIER_IR", ""},
		{"GLACIER", "restore request"},
		{"DEEP_ARCHIVE", "restore request"},
		{"standard_ia", "not an S3 storage class name"},
		{"STANDARD IA", "not an S3 storage class name"},
	} {
		t.Run(tc.class, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ArchiveStorageClass = tc.class
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "ArchiveStorageClass")):
				t.Fatalf("got %v, want an error naming ArchiveStorageClass and saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRequestID_UniqueAndTimeOrdered(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
		id := newRequestID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("id %d: %q (length %d, seen before: %v)", i, id, len(id), seen[id])
		}
		seen[id] = true
		if i%100 == 0 && id <= prev {
			t.Fatalf("id %q made a millisecond after %q sorts before it", id, prev)
		}
		prev = id
	}
}
