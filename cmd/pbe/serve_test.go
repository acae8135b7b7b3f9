package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestServe_OperatorAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, nil)

	fi, err := os.Stat(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("admin.token mode: got %o, want 600", mode)
	}
	if !strings.HasPrefix(s.token, "pbe_") {
		t.Errorf("token %q does not start with pbe_", s.token)
	}

	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"no credentials", nil},
		{"wrong token", []string{"Authorization", "Bearer pbe_not-a-real-token"}},
		{"wrong scheme", []string{"Authorization", "Basic " + s.token}},
		{"empty bearer", []string{"Authorization", "Bearer "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []struct{ method, path string }{
				{"GET", "/api/cp/tenants"}, {"POST", "/api/cp/tenants"}, {"GET", "/api/cp/tenants/acme"}, {"DELETE", "/api/cp/tenants/acme"},
			} {
				r := s.do(req.method, s.base()+req.path, `{"id":"acme"}`, append([]string{"Content-Type", "application/json"}, tc.header...)...)
				mustStatus(t, r, http.StatusUnauthorized)
				var body struct{ Code, Message string }
				r.json(t, &body)
				if body.Code != "unauthorized" || body.Message == "" {
					t.Errorf("%s %s: got body %s, want code unauthorized and a message", req.method, req.path, r.body)
				}
			}
		})
	}
	t.Run("nothing was created", func(t *testing.T) {
		var list struct{ Total int }
		s.api("GET", "/api/cp/tenants?state=all", nil).json(t, &list)
		if list.Total != 0 {
			t.Fatalf("got %d tenants, want 0", list.Total)
		}
	})
	t.Run("token survives restart and is not reprinted", func(t *testing.T) {
		s.stop()
		s2 := startServer(t, dir, nil)
		if s2.token != s.token {
			t.Fatal("admin.token changed across restart")
		}
		if s2.p.cp.GeneratedToken() != "" {
			t.Fatal("a second operator token was generated on restart")
		}
		mustStatus(t, s2.api("GET", "/api/cp/tenants", nil), http.StatusOK)
	})
}

func TestServe_AdminTokenFromEnv(t *testing.T) {
	t.Setenv("PBE_ADMIN_TOKEN", "pbe_operator-secret-from-env")
	dir := t.TempDir()
	o := defaultServeOptions()
	o.httpAddr, o.dir = "127.0.0.1:0", dir
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("pbe_operator-secret-from-env\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, nil)
	if s.p.cp.GeneratedToken() != "" {
		t.Fatal("a token was generated although PBE_ADMIN_TOKEN was set")
	}
	mustStatus(t, s.do("GET", s.base()+"/api/cp/tenants", nil, "Authorization", "Bearer pbe_operator-secret-from-env"), http.StatusOK)
}

func TestServe_TenantLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, nil)

	r := s.api("POST", "/api/cp/tenants", map[string]any{"id": "acme", "name": "Acme Inc."})
	mustStatus(t, r, http.StatusCreated)
	var created struct {
		ID, Name, State, Durability, Node, URL string
		Epoch                                  uint64
	}
	r.json(t, &created)
	if created.ID != "acme" || created.State != "active" || created.Durability != "async" || created.Epoch != 0 || created.Node != "" ||
		created.URL != s.tenantURL("acme", "") || created.Name != "Acme Inc." {
		t.Fatalf("created tenant: got %+v", created)
	}
	if loc := r.header.Get("Location"); loc != "/api/cp/tenants/acme" {
		t.Errorf("Location: got %q", loc)
	}

	t.Run("get and list", func(t *testing.T) {
		mustStatus(t, s.api("GET", "/api/cp/tenants/acme", nil), http.StatusOK)
		mustStatus(t, s.api("GET", "/api/cp/tenants/nope", nil), http.StatusNotFound)
		var list struct {
			Items []struct{ ID string }
			Total int
		}
		s.api("GET", "/api/cp/tenants", nil).json(t, &list)
		if list.Total != 1 || list.Items[0].ID != "acme" {
			t.Fatalf("list: got %+v", list)
		}
	})
	t.Run("duplicate is 409", func(t *testing.T) {
		r := s.api("POST", "/api/cp/tenants", map[string]any{"id": "acme"})
		mustStatus(t, r, http.StatusConflict)
		var e struct{ Code string }
		r.json(t, &e)
		if e.Code != "tenant_exists" {
			t.Fatalf("got code %q", e.Code)
		}
	})
	t.Run("idempotent retry returns the first outcome", func(t *testing.T) {
		body := map[string]any{"id": "retry-me"}
		mustStatus(t, s.api("POST", "/api/cp/tenants", body, "Idempotency-Key", "k-1"), http.StatusCreated)
		mustStatus(t, s.api("POST", "/api/cp/tenants", body, "Idempotency-Key", "k-1"), http.StatusCreated)
		mustStatus(t, s.api("POST", "/api/cp/tenants", body, "Idempotency-Key", "k-2"), http.StatusConflict)
	})

	tok := s.superuserTokenAfterAdd("acme")
	t.Run("placed on a node when first needed", func(t *testing.T) {
		var got struct {
			Node  string
			Epoch uint64
		}
		s.api("GET", "/api/cp/tenants/acme", nil).json(t, &got)
		if got.Node != "local" || got.Epoch != 1 {
			t.Fatalf("after the first use: got %+v, want node local at epoch 1", got)
		}
	})
	s.createPostsCollection("acme", tok)
	s.createPost("acme", "before delete")

	t.Run("delete keeps data for restore", func(t *testing.T) {
		r := s.api("DELETE", "/api/cp/tenants/acme", nil)
		mustStatus(t, r, http.StatusOK)
		var del struct {
			State      string
			PurgeAfter *time.Time `json:"purge_after"`
		}
		r.json(t, &del)
		if del.State != "deleted" || del.PurgeAfter == nil || time.Until(*del.PurgeAfter) < 6*24*time.Hour {
			t.Fatalf("deleted tenant: got %+v", del)
		}
		if _, err := os.Stat(filepath.Join(dir, "tenants", "acme")); !os.IsNotExist(err) {
			t.Fatalf("local copy still present after delete: %v", err)
		}
		mustStatus(t, s.do("GET", s.tenantURL("acme", "/api/collections/posts/records"), nil), http.StatusNotFound)
		mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]any{"id": "acme"}), http.StatusConflict)
		mustStatus(t, s.api("DELETE", "/api/cp/tenants/acme", nil), http.StatusNotFound)
		var list struct{ Total int }
		s.api("GET", "/api/cp/tenants?state=deleted", nil).json(t, &list)
		if list.Total != 1 {
			t.Fatalf("deleted list: got %d, want 1", list.Total)
		}
	})
	t.Run("restore-deleted brings the data back", func(t *testing.T) {
		mustStatus(t, s.api("POST", "/api/cp/tenants/acme/restore", nil), http.StatusOK)
		mustStatus(t, s.api("POST", "/api/cp/tenants/acme/restore", nil), http.StatusConflict)
		if got := s.postTitles("acme"); !slices.Equal(got, []string{"before delete"}) {
			t.Fatalf("after restore: got %v", got)
		}
	})
}

// superuserTokenAfterAdd adds the standard superuser to a tenant created
// without one, through the operator API, and logs in.
func (s *testServer) superuserTokenAfterAdd(id string) string {
	s.t.Helper()
	mustStatus(s.t, s.api("POST", "/api/cp/tenants/"+id+"/admins",
		map[string]string{"email": "admin@" + id + ".test", "password": "password-" + id}), http.StatusCreated)
	return s.superuserToken(id)
}

func TestServe_Purge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, func(o *serveOptions) { o.deleteGrace, o.purgeInterval = 0, 50*time.Millisecond })
	tok := s.createTenant("gone")
	s.createPostsCollection("gone", tok)
	s.createPost("gone", "x")
	objects := filepath.Join(dir, "objects", "tenants", "gone")
	if _, err := os.Stat(objects); err != nil {
		t.Fatalf("no object-store data for the tenant: %v", err)
	}
	mustStatus(t, s.api("DELETE", "/api/cp/tenants/gone", nil), http.StatusOK)
	waitFor(t, "purge", func() bool {
		return s.api("GET", "/api/cp/tenants/gone", nil).status == http.StatusNotFound
	})
	if _, err := os.Stat(objects); !os.IsNotExist(err) {
		t.Fatalf("object-store data still present after purge: %v", err)
	}
	t.Run("the id can be used again, empty", func(t *testing.T) {
		tok := s.createTenant("gone")
		s.createPostsCollection("gone", tok)
		if got := s.postTitles("gone"); len(got) != 0 {
			t.Fatalf("got %v, want no posts", got)
		}
	})
}

// waitFor polls cond until it holds (or fails the test after 20 s).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServe_TenantAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	tok := s.createTenant("acme")
	s.createPostsCollection("acme", tok)
	id := s.createPost("acme", "hello")

	t.Run("read back by host", func(t *testing.T) {
		r := s.do("GET", s.tenantURL("acme", "/api/collections/posts/records/"+id), nil)
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"title":"hello"`) {
			t.Fatalf("got %s", r.body)
		}
	})
	t.Run("read back by X-Tenant-ID on the base domain", func(t *testing.T) {
		r := s.do("GET", s.base()+"/api/collections/posts/records/"+id, nil, "X-Tenant-ID", "acme")
		mustStatus(t, r, http.StatusOK)
	})
	t.Run("host is case-insensitive and may carry a trailing dot", func(t *testing.T) {
		mustStatus(t, s.do("GET", s.tenantURL("acme", "/api/health"), nil, "Host", "ACME.localhost.:"+s.port), http.StatusOK)
	})
	t.Run("admin UI", func(t *testing.T) {
		r := s.do("GET", s.tenantURL("acme", "/_/"), nil)
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), "<html") || r.header.Get("Content-Security-Policy") == "" {
			t.Fatalf("admin UI: got %.200s", r.body)
		}
	})
	t.Run("PocketBase backups can be made", func(t *testing.T) {
		s.uploadFile("acme", tok, []byte("a file in the object store"))
		mustStatus(t, s.do("POST", s.tenantURL("acme", "/api/backups"), map[string]string{"name": "b1.zip"}, "Authorization", tok), http.StatusNoContent)
		r := s.do("GET", s.tenantURL("acme", "/api/backups"), nil, "Authorization", tok)
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), "b1.zip") {
			t.Fatalf("backup list: %s", r.body)
		}
		var ft struct{ Token string }
		s.do("POST", s.tenantURL("acme", "/api/files/token"), nil, "Authorization", tok).json(t, &ft)
		r = s.do("GET", s.tenantURL("acme", "/api/backups/b1.zip?token="+ft.Token), nil)
		mustStatus(t, r, http.StatusOK)
		zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
		if err != nil {
			t.Fatalf("backup is not a zip: %v", err)
		}
		names := map[string]bool{}
		for _, f := range zr.File {
			names[f.Name] = f.UncompressedSize64 > 0
		}
		if !names["data.db"] || !names["auxiliary.db"] {
			t.Fatalf("backup entries: got %v, want non-empty data.db and auxiliary.db", names)
		}
	})
	t.Run("PocketBase backup restore is refused", func(t *testing.T) {
		r := s.do("POST", s.tenantURL("acme", "/api/backups/x.zip/restore"), nil, "Authorization", tok)
		mustStatus(t, r, http.StatusBadRequest)
	})
	t.Run("internal headers are stripped", func(t *testing.T) {
		mustStatus(t, s.do("GET", s.tenantURL("acme", "/api/health"), nil, "X-Pbe-Node", "evil"), http.StatusOK)
	})
	t.Run("health and readiness", func(t *testing.T) {
		mustStatus(t, s.do("GET", s.base()+"/healthz", nil), http.StatusOK)
		r := s.do("GET", s.base()+"/readyz", nil)
		mustStatus(t, r, http.StatusOK)
		var rep struct {
			Status string
			Checks map[string]struct{ Status string }
		}
		r.json(t, &rep)
		for _, name := range []string{"control_plane", "object_store", "tenant_node"} {
			if rep.Checks[name].Status != "ok" {
				t.Errorf("check %s: got %+v", name, rep.Checks[name])
			}
		}
	})
}

func TestServe_TenantHeaderDisabled(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), func(o *serveOptions) { o.allowTenantHeader = false })
	s.createTenant("acme")
	r := s.do("GET", s.base()+"/api/health", nil, "X-Tenant-ID", "acme")
	mustStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "acme.localhost") {
		t.Fatalf("message should point to the tenant host: %s", r.body)
	}
	mustStatus(t, s.do("GET", s.tenantURL("acme", "/api/health"), nil), http.StatusOK)
}

func TestServe_Isolation(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	tokA, tokB := s.createTenant("alpha"), s.createTenant("bravo")
	s.createPostsCollection("alpha", tokA)
	s.createPostsCollection("bravo", tokB)

	eventsB := s.subscribe("bravo", "posts")
	eventsA := s.subscribe("alpha", "posts")
	s.createPost("alpha", "only in alpha")

	t.Run("realtime event reaches only its tenant", func(t *testing.T) {
		select {
		case ev := <-eventsA:
			if !strings.Contains(ev, "only in alpha") {
				t.Fatalf("alpha event: got %s", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("alpha got no realtime event")
		}
		select {
		case ev := <-eventsB:
			t.Fatalf("bravo received alpha's event: %s", ev)
		case <-time.After(500 * time.Millisecond):
		}
	})
	t.Run("records", func(t *testing.T) {
		if got := s.postTitles("bravo"); len(got) != 0 {
			t.Fatalf("bravo sees %v", got)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		mustStatus(t, s.do("GET", s.tenantURL("bravo", "/api/collections"), nil, "Authorization", tokA), http.StatusUnauthorized)
		mustStatus(t, s.do("GET", s.tenantURL("alpha", "/api/collections"), nil, "Authorization", tokA), http.StatusOK)
	})
	t.Run("superusers", func(t *testing.T) {
		r := s.do("POST", s.tenantURL("bravo", "/api/collections/_superusers/auth-with-password"),
			map[string]string{"identity": "admin@alpha.test", "password": "password-alpha"})
		mustStatus(t, r, http.StatusBadRequest)
	})
	t.Run("collections", func(t *testing.T) {
		mustStatus(t, s.do("POST", s.tenantURL("alpha", "/api/collections"), map[string]any{
			"name": "secrets", "type": "base", "listRule": "",
		}, "Authorization", tokA), http.StatusOK)
		mustStatus(t, s.do("GET", s.tenantURL("bravo", "/api/collections/secrets"), nil, "Authorization", tokB), http.StatusNotFound)
	})
}

// subscribe opens a realtime stream to tenant id subscribed to topic and
// returns the data of every record event it receives.
func (s *testServer) subscribe(id, topic string) <-chan string {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.tenantURL(id, "/api/realtime"), nil)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	clientID := ""
	for clientID == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			s.t.Fatalf("realtime connect: %v", err)
		}
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			var c struct{ ClientID string }
			_ = json.Unmarshal([]byte(data), &c)
			clientID = c.ClientID
		}
	}
	mustStatus(s.t, s.do("POST", s.tenantURL(id, "/api/realtime"), map[string]any{
		"clientId": clientID, "subscriptions": []string{topic},
	}), http.StatusNoContent)
	out := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if data, ok := strings.CutPrefix(line, "data:"); ok && strings.Contains(data, `"record"`) {
				out <- data
			}
		}
	}()
	return out
}

func TestServe_LowDiskRefusesWritesAndRecovers(t *testing.T) {
	t.Parallel()
	var free atomic.Uint64
	free.Store(10 << 30)
	s := startServer(t, t.TempDir(), func(o *serveOptions) {
		o.minFreeDisk = 1 << 30
		o.diskCheckInterval = 20 * time.Millisecond
		o.freeDisk = func(string) (uint64, error) { return free.Load(), nil }
	})
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]any{"id": "before"}), http.StatusCreated)

	free.Store(100 << 20) // the volume fills up
	waitFor(t, "readiness to fail", func() bool { return s.do("GET", s.base()+"/readyz", nil).status == http.StatusServiceUnavailable })
	r := s.do("GET", s.base()+"/readyz", nil)
	if !strings.Contains(string(r.body), `"disk"`) || !strings.Contains(string(r.body), "below the minimum") {
		t.Fatalf("readyz should name the disk check: %s", r.body)
	}
	checkError(t, s.api("POST", "/api/cp/tenants", map[string]any{"id": "during"}), http.StatusInsufficientStorage, "insufficient_storage")
	mustStatus(t, s.api("GET", "/api/cp/tenants/before", nil), http.StatusOK) // reads still work

	free.Store(10 << 30) // space returns
	waitFor(t, "readiness to recover", func() bool { return s.do("GET", s.base()+"/readyz", nil).status == http.StatusOK })
	mustStatus(t, s.api("POST", "/api/cp/tenants", map[string]any{"id": "after"}), http.StatusCreated)
	mustStatus(t, s.api("GET", "/api/cp/tenants/during", nil), http.StatusNotFound)
}

func TestServe_CustomDomains(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	tok := s.createTenant("acme")
	s.createTenant("bravo")
	s.createPostsCollection("acme", tok)
	s.createPost("acme", "on my own domain")

	r := s.api("PUT", "/api/cp/tenants/acme/domains", map[string]any{"domains": []string{"App.Example.test.", "www.example.test"}})
	mustStatus(t, r, http.StatusOK)
	var got struct{ Domains []string }
	r.json(t, &got)
	if !slices.Equal(got.Domains, []string{"app.example.test", "www.example.test"}) {
		t.Fatalf("domains: got %v", got.Domains)
	}
	t.Run("the domain serves the tenant", func(t *testing.T) {
		r := s.do("GET", "http://app.example.test:"+s.port+"/api/collections/posts/records", nil, "Host", "app.example.test:"+s.port)
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), "on my own domain") {
			t.Fatalf("got %s", r.body)
		}
	})
	t.Run("bad domains are refused and change nothing", func(t *testing.T) {
		for _, tc := range []struct {
			domains []string
			status  int
			code    string
		}{
			{[]string{"app.example.test"}, http.StatusConflict, "domain_taken"},
			{[]string{"localhost"}, http.StatusBadRequest, "invalid_input"},
			{[]string{"x.localhost"}, http.StatusBadRequest, "invalid_input"},
			{[]string{"bad_domain.test"}, http.StatusBadRequest, "invalid_input"},
			{[]string{"-x.test"}, http.StatusBadRequest, "invalid_input"},
		} {
			checkError(t, s.api("PUT", "/api/cp/tenants/bravo/domains", map[string]any{"domains": tc.domains}), tc.status, tc.code)
		}
		checkError(t, s.api("PUT", "/api/cp/tenants/bravo/domains", `{}`, "Content-Type", "application/json"), http.StatusBadRequest, "invalid_input")
		var b struct{ Domains []string }
		s.api("GET", "/api/cp/tenants/bravo", nil).json(t, &b)
		if len(b.Domains) != 0 {
			t.Fatalf("bravo got domains %v", b.Domains)
		}
	})
	t.Run("a removed domain stops serving and can be taken", func(t *testing.T) {
		mustStatus(t, s.api("PUT", "/api/cp/tenants/acme/domains", map[string]any{"domains": []string{"www.example.test"}}), http.StatusOK)
		checkError(t, s.do("GET", "http://app.example.test:"+s.port+"/api/health", nil, "Host", "app.example.test:"+s.port), http.StatusNotFound, "tenant_not_found")
		mustStatus(t, s.api("PUT", "/api/cp/tenants/bravo/domains", map[string]any{"domains": []string{"app.example.test"}}), http.StatusOK)
		r := s.do("GET", "http://app.example.test:"+s.port+"/api/collections/posts/records", nil, "Host", "app.example.test:"+s.port)
		mustStatus(t, r, http.StatusNotFound) // bravo has no posts collection
	})
}
