package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	_ "modernc.org/sqlite"
)

// TestServe_RestartAndWipe stops the platform, starts it again, then wipes
// the local tenant cache and starts again: every tenant and record comes
// back, from the local copy and then from the object store alone.
func TestServe_RestartAndWipe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	want := map[string][]string{}
	for _, id := range []string{"alpha", "bravo"} {
		tok := s.createTenant(id)
		s.createPostsCollection(id, tok)
		for i := range 5 {
			title := fmt.Sprintf("%s-%d", id, i)
			s.createPost(id, title)
			want[id] = append(want[id], title)
		}
	}
	payload := bytes.Repeat([]byte("uploaded file bytes "), 1000)
	filePath := s.uploadFile("alpha", s.superuserToken("alpha"), payload)
	check := func(t *testing.T, s *testServer) {
		t.Helper()
		r := s.do("GET", s.tenantURL("alpha", filePath), nil)
		mustStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.body, payload) {
			t.Fatalf("uploaded file: got %d bytes, want the %d bytes uploaded", len(r.body), len(payload))
		}
		for id, titles := range want {
			if got := s.postTitles(id); !slices.Equal(got, titles) {
				t.Fatalf("%s: got %v, want %v", id, got, titles)
			}
		}
	}

	s.stop()
	t.Run("graceful restart keeps everything", func(t *testing.T) {
		s := startServer(t, dir, nil)
		check(t, s)
		s.stop()
	})

	t.Run("wiped cache restores from the object store", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, "tenants")); err != nil {
			t.Fatal(err)
		}
		s := startServer(t, dir, nil)
		check(t, s)
		integrityCheck(t, filepath.Join(dir, "tenants", "alpha", "pb_data", "data.db"))

		// Keep writing after the restore, then restore again: the second
		// restore must hold the new writes (upstream restore bugs).
		for i := range 3 {
			title := fmt.Sprintf("alpha-after-%d", i)
			s.createPost("alpha", title)
			want["alpha"] = append(want["alpha"], title)
		}
		s.stop()
		if err := os.RemoveAll(filepath.Join(dir, "tenants")); err != nil {
			t.Fatal(err)
		}
		s = startServer(t, dir, nil)
		check(t, s)
		integrityCheck(t, filepath.Join(dir, "tenants", "alpha", "pb_data", "data.db"))
		var tenant struct{ Epoch, RestoreEpoch uint64 }
		s.api("GET", "/api/cp/tenants/alpha", nil).json(t, &tenant)
		if tenant.Epoch < 3 {
			t.Errorf("epoch after two restores: got %d, want a new epoch per restore (>= 3)", tenant.Epoch)
		}
	})
}

// integrityCheck runs PRAGMA integrity_check on a database file.
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatal(err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check %s: %s", path, res)
	}
}

// uploadFile creates a "docs" collection with a file field in tenant id,
// uploads data as a record's file, and returns the file's URL path.
func (s *testServer) uploadFile(id, token string, data []byte) string {
	s.t.Helper()
	mustStatus(s.t, s.do("POST", s.tenantURL(id, "/api/collections"), map[string]any{
		"name": "docs", "type": "base", "viewRule": "", "createRule": "",
		"fields": []map[string]any{{"name": "file", "type": "file", "maxSelect": 1, "maxSize": 10 << 20}},
	}, "Authorization", token), http.StatusOK)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "doc.bin")
	fw.Write(data)
	mw.Close()
	r := s.do("POST", s.tenantURL(id, "/api/collections/docs/records"), buf.Bytes(), "Content-Type", mw.FormDataContentType())
	mustStatus(s.t, r, http.StatusOK)
	var rec struct{ ID, File, CollectionID string }
	if err := json.Unmarshal(r.body, &rec); err != nil {
		s.t.Fatal(err)
	}
	return fmt.Sprintf("/api/files/%s/%s/%s", rec.CollectionID, rec.ID, rec.File)
}
