package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/storage"
)

// uploadNote creates a record with an uploaded file in tenant id's
// "notes" collection and returns its file's name.
func (s *testServer) uploadNote(t *testing.T, id, token, title, content string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("title", title)
	fw, _ := mw.CreateFormFile("doc", title+".txt")
	_, _ = fw.Write([]byte(content))
	_ = mw.Close()
	r := s.do("POST", s.tenantURL(id, "/api/collections/notes/records"), body.Bytes(), "Content-Type", mw.FormDataContentType(), "Authorization", token)
	mustStatus(t, r, http.StatusOK)
}

func TestArchives_ExportOpensInPocketBaseImportAndNamedBackups(t *testing.T) {
	s, mail := startAccountsServer(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("PATCH", "/api/cp/users/"+alice.id, map[string]any{}), http.StatusForbidden)
	mustStatus(t, s.api("PATCH", "/api/cp/users/"+alice.id, map[string]any{"quota": map[string]any{"max_tenants": 5}}), http.StatusOK)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]any{"id": "shop", "durability": "sync", // each write is in the object store when it returns
		"admin": map[string]string{"email": "admin@shop.test", "password": "password-shop"}}), http.StatusCreated)
	token := s.superuserToken("shop")
	s.createPostsCollection("shop", token)
	mustStatus(t, s.do("POST", s.tenantURL("shop", "/api/collections"), map[string]any{
		"name": "notes", "type": "base", "listRule": "", "viewRule": "",
		"fields": []map[string]any{{"name": "title", "type": "text"}, {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 1 << 20}},
	}, "Authorization", token), http.StatusOK)
	s.createPost("shop", "A")
	s.uploadNote(t, "shop", token, "readme", "hello from the archive")
	s.createPost("shop", "B") // sync durability: in the object store now

	// Export: a pb_data directory that stock PocketBase opens.
	r := alice.api("GET", "/api/cp/tenants/shop/export", nil)
	mustStatus(t, r, http.StatusOK)
	if r.header.Get("Content-Type") != "application/gzip" || !strings.Contains(r.header.Get("Content-Disposition"), "shop-") {
		t.Fatalf("export headers: %v", r.header)
	}
	dir := t.TempDir()
	pbData := filepath.Join(dir, "pb_data")
	if err := os.MkdirAll(pbData, 0o750); err != nil {
		t.Fatal(err)
	}
	var files []string
	m, err := storage.ReadArchive(bytes.NewReader(r.body), pbData, func(e storage.ArchiveEntry) error {
		files = append(files, e.Path)
		p := filepath.Join(pbData, "storage", filepath.FromSlash(e.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		return os.WriteFile(p, e.Data, 0o640)
	})
	// (PocketBase's local file storage keeps a .attrs file beside each
	// upload; the archive carries what the store holds.)
	if err != nil || m.Tenant != "shop" || len(files) == 0 || !strings.HasSuffix(files[0], ".txt") {
		t.Fatalf("archive: %+v files %v: %v", m, files, err)
	}
	app := core.NewBaseApp(core.BaseAppConfig{DataDir: pbData})
	if err := app.Bootstrap(); err != nil {
		t.Fatalf("stock PocketBase cannot open the export: %v", err)
	}
	recs, err := app.FindAllRecords("posts")
	if err != nil || len(recs) != 2 {
		t.Fatalf("posts in the export: %d, %v", len(recs), err)
	}
	notes, _ := app.FindAllRecords("notes")
	if len(notes) != 1 {
		t.Fatalf("notes in the export: %d", len(notes))
	}
	fsys, err := app.NewFilesystem()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := fsys.GetReader(notes[0].BaseFilesPath() + "/" + notes[0].GetString("doc"))
	if err != nil {
		t.Fatalf("the exported file is not where PocketBase looks: %v", err)
	}
	content, _ := io.ReadAll(rd)
	rd.Close()
	fsys.Close()
	_ = app.ResetBootstrapState()
	if string(content) != "hello from the archive" {
		t.Fatalf("exported file: %q", content)
	}

	// Import it as a new tenant: same records, same file.
	exported := r.body
	imp := s.do("POST", s.base()+"/api/cp/tenants/import?id=shop-imported", r.body, "Authorization", "Bearer "+alice.access, "Content-Type", "application/gzip")
	mustStatus(t, imp, http.StatusCreated)
	if got := strings.Join(s.postTitles("shop-imported"), ","); got != "A,B" {
		t.Fatalf("imported posts: %s", got)
	}
	fr := s.do("GET", s.tenantURL("shop-imported", "/api/collections/notes/records"), nil)
	mustStatus(t, fr, http.StatusOK)
	var list struct {
		Items []struct {
			ID, CollectionID string
			Doc              string
		}
	}
	fr.json(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("imported notes: %s", fr.body)
	}
	it := list.Items[0]
	got := s.do("GET", s.tenantURL("shop-imported", "/api/files/"+it.CollectionID+"/"+it.ID+"/"+it.Doc), nil)
	if got.status != http.StatusOK || string(got.body) != "hello from the archive" {
		t.Fatalf("imported file: %d %q", got.status, got.body)
	}
	// A bad archive creates nothing.
	mustStatus(t, s.do("POST", s.base()+"/api/cp/tenants/import?id=junk", "not an archive", "Authorization", "Bearer "+alice.access), http.StatusBadRequest)
	mustStatus(t, s.api("GET", "/api/cp/tenants/junk", nil), http.StatusNotFound)
	// An archive whose database fails PRAGMA integrity_check creates
	// nothing either.
	r = s.do("POST", s.base()+"/api/cp/tenants/import?id=shop-corrupt", corruptArchiveDB(t, exported), "Authorization", "Bearer "+alice.access, "Content-Type", "application/gzip")
	mustStatus(t, r, http.StatusBadRequest)
	if body := strings.ToLower(string(r.body)); !strings.Contains(body, "data.db") {
		t.Fatalf("corrupt archive: %s, want an error naming data.db", r.body)
	}
	mustStatus(t, s.api("GET", "/api/cp/tenants/shop-corrupt", nil), http.StatusNotFound)

	// A backup is taken from the object store whether or not the tenant is
	// active.
	if ok, err := s.p.node.Evict(context.Background(), "shop"); err != nil || !ok {
		t.Fatalf("evict: %v %v", ok, err)
	}
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups", map[string]string{"name": "while-idle"}), http.StatusCreated)
	mustStatus(t, alice.api("DELETE", "/api/cp/tenants/shop/backups/while-idle", nil), http.StatusNoContent)

	// Named backup, more writes, restore the backup: back to A, B.
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups", map[string]string{"name": "before-launch"}), http.StatusCreated)
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups", map[string]string{"name": "before-launch"}), http.StatusConflict)
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups", map[string]string{"name": "../escape"}), http.StatusBadRequest)
	r = alice.api("GET", "/api/cp/tenants/shop/backups", nil)
	if !strings.Contains(string(r.body), `"before-launch"`) {
		t.Fatalf("backups: %s", r.body)
	}
	s.createPost("shop", "C")
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups/before-launch/restore", nil), http.StatusOK)
	if got := strings.Join(s.postTitles("shop"), ","); got != "A,B" {
		t.Fatalf("after restoring the backup: %s", got)
	}
	restored := s.waitEvent("tenant.backup_restored", func(e cluster.Event) bool { return e.Tenant == "shop" })
	if archive, _ := restored.Data["archive"].(string); !strings.Contains(archive, "before-launch") || restored.User != alice.id {
		t.Errorf("backup restore event: %+v, want tenant shop of %s from the archive of before-launch", restored, alice.id)
	}
	mustStatus(t, alice.api("POST", "/api/cp/tenants/shop/backups/nope/restore", nil), http.StatusNotFound)
	mustStatus(t, alice.api("DELETE", "/api/cp/tenants/shop/backups/before-launch", nil), http.StatusNoContent)

	// Another customer sees none of it.
	bob := signup(t, s, mail, "bob@example.com", true)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/cp/tenants/shop/export"}, {"GET", "/api/cp/tenants/shop/backups"},
		{"POST", "/api/cp/tenants/shop/backups"},
	} {
		if r := bob.api(c.method, c.path, nil); r.status != http.StatusNotFound {
			t.Errorf("bob %s %s: %d", c.method, c.path, r.status)
		}
	}
}

// corruptArchiveDB returns archive with pages of its data.db overwritten,
// its SQLite header intact.
func corruptArchiveDB(t *testing.T, archive []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "pb_data/data.db" {
			for i := 4096; i < len(data); i++ {
				data[i] = byte(i * 7)
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
