package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/tenantnode/hooks"
)

// hookFiles is a pb_hooks directory as a PocketBase project keeps it.
var hookFiles = map[string]string{
	"posts.pb.js": `/// <reference path="../pb_data/types.d.ts" />
onRecordCreateRequest((e) => {
  if (e.record.get("title") === "forbidden") {
    throw new BadRequestError("that title is not allowed")
  }
  e.record.set("title", e.record.get("title").toUpperCase())
  e.next()
}, "posts")
`,
	"routes.pb.js": `
routerAdd("GET", "/api/try/attach", (e) => {
  try {
    $app.db().newQuery("ATTACH DATABASE '" + e.request.url.query().get("path") + "' AS other").execute()
    return e.string(200, "attached")
  } catch (err) {
    return e.string(200, String(err))
  }
})
routerAdd("GET", "/api/try/exit", (e) => {
  $os.exit(1)
  return e.string(200, "still here")
})
routerAdd("GET", "/api/try/loop", (e) => {
  while (true) {}
})
`,
}

func writeHookDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, code := range hookFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(code), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// importHooks imports writeHookDir's files into tenant id with the CLI
// (`pbe hooks import`, whose client finds {id}.localhost on the loopback),
// and returns the hooks' status.
func importHooks(t *testing.T, s *testServer, id string) hooks.Status {
	t.Helper()
	o := hookClientOptions{email: "admin@" + id + ".test", password: "password-" + id}
	if out, err := runPBE("hooks", "import", s.tenantURL(id, ""), writeHookDir(t), "--email", o.email, "--password", o.password); err != nil {
		t.Fatalf("pbe hooks import: %v\n%s", err, out)
	}
	var st hooks.Status
	if err := o.call(s.tenantURL(id, ""), "GET", "/api/pbe/hooks", nil, &st); err != nil {
		t.Fatalf("hooks status: %v", err)
	}
	for _, h := range st.Hooks {
		if !h.Loaded {
			t.Fatalf("hook %s did not load: %+v", h.Name, h)
		}
	}
	return st
}

// checkPostHook checks tenant id's record hook changes and rejects writes.
func checkPostHook(t *testing.T, s *testServer, id string) {
	t.Helper()
	r := s.do("POST", s.tenantURL(id, "/api/collections/posts/records"), map[string]string{"title": "hello"})
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"title":"HELLO"`) {
		t.Fatalf("the record hook did not run: %s", r.body)
	}
	r = s.do("POST", s.tenantURL(id, "/api/collections/posts/records"), map[string]string{"title": "forbidden"})
	mustStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "title is not allowed") {
		t.Fatalf("rejected write: %s", r.body)
	}
}

func TestHooks_Platform(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := func(o *serveOptions) { o.hookCPULimit = 300 * time.Millisecond }
	s := startServer(t, dir, opts)
	s.createPostsCollection("hooked", s.createTenant("hooked"))
	s.createPostsCollection("neighbour", s.createTenant("neighbour"))
	importHooks(t, s, "hooked")
	checkPostHook(t, s, "hooked")
	// _hooks is a collection of the tenant's own: its admin UI lists and
	// edits it like any other (superusers only).
	r := s.do("GET", s.tenantURL("hooked", "/api/collections/_hooks"), nil, "Authorization", s.superuserToken("hooked"))
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"system":true`) || !strings.Contains(string(r.body), `"name":"code"`) {
		t.Fatalf("_hooks collection: %s", r.body)
	}
	mustStatus(t, s.do("GET", s.tenantURL("hooked", "/api/collections/_hooks/records"), nil), http.StatusForbidden)

	t.Run("no ATTACH of another tenant's database", func(t *testing.T) {
		other := filepath.Join(dir, "tenants", "neighbour", "pb_data", "data.db")
		if _, err := os.Stat(other); err != nil {
			t.Fatal(err)
		}
		r := s.do("GET", s.tenantURL("hooked", "/api/try/attach?path="+other), nil)
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), "too many attached databases") {
			t.Fatalf("ATTACH was not refused: %s", r.body)
		}
	})
	t.Run("$os.exit is refused and the process lives", func(t *testing.T) {
		r := s.do("GET", s.tenantURL("hooked", "/api/try/exit"), nil)
		mustStatus(t, r, http.StatusBadRequest)
		mustStatus(t, s.do("GET", s.tenantURL("neighbour", "/api/health"), nil), http.StatusOK)
	})
	t.Run("an infinite loop stops and the neighbour keeps serving", func(t *testing.T) {
		done := make(chan response, 1)
		go func() { done <- s.do("GET", s.tenantURL("hooked", "/api/try/loop"), nil) }()
		served := 0
		for {
			select {
			case r := <-done:
				mustStatus(t, r, http.StatusInternalServerError)
				if served == 0 {
					t.Fatal("the neighbour served nothing while the loop ran")
				}
				return
			default:
			}
			mustStatus(t, s.do("GET", s.tenantURL("neighbour", "/api/collections/posts/records"), nil), http.StatusOK)
			served++
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("hook runs are on /metrics", func(t *testing.T) {
		text := s.scrapeMetrics(t, s.base()+"/metrics", "Authorization", "Bearer "+s.token)
		var runs, errs float64
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, `pbe_tenant_hook_runs_total{tenant="hooked"} `); ok {
				runs, _ = strconv.ParseFloat(v, 64)
			}
			if v, ok := strings.CutPrefix(line, `pbe_tenant_hook_errors_total{tenant="hooked"} `); ok {
				errs, _ = strconv.ParseFloat(v, 64)
			}
		}
		// Two creates, an exit, a loop and the ATTACH route have run; the
		// rejected create, the exit and the loop failed.
		if runs < 5 || errs < 3 {
			t.Fatalf("hook metrics: %v runs, %v errors", runs, errs)
		}
	})
	t.Run("hooks survive export and import", func(t *testing.T) {
		r := s.api("GET", "/api/cp/tenants/hooked/export", nil)
		mustStatus(t, r, http.StatusOK)
		imp := s.do("POST", s.base()+"/api/cp/tenants/import?id=hooked-copy", r.body, "Authorization", "Bearer "+s.token, "Content-Type", "application/gzip")
		mustStatus(t, imp, http.StatusCreated)
		r = s.do("POST", s.tenantURL("hooked-copy", "/api/collections/posts/records"), map[string]string{"title": "copied"})
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"title":"COPIED"`) {
			t.Fatalf("the imported tenant lost its hooks: %s", r.body)
		}
	})

	t.Run("hooks survive eviction", func(t *testing.T) {
		if ok, err := s.p.node.Evict(context.Background(), "hooked"); err != nil || !ok {
			t.Fatalf("evict: %v %v", ok, err)
		}
		checkPostHook(t, s, "hooked")
	})

	// Stopping the platform closes every tenant; its hooks come back with it.
	s.stop()
	s = startServer(t, dir, opts)
	checkPostHook(t, s, "hooked")
}

func TestFleet_HooksFollowTheTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	importHooks(t, g, "acme")
	checkPostHook(t, g, "acme")
	from := f.owner("acme")
	moved, err := f.api.MoveTenant(context.Background(), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if moved.Node == from {
		t.Fatalf("tenant still on %s", from)
	}
	checkPostHook(t, g, "acme")

	// The node serving it dies: the survivor restores the tenant, hooks
	// included, from the object store.
	f.waitReplicated("acme")
	f.kill(moved.Node)
	checkPostHook(t, g, "acme")
	if got := f.owner("acme"); got == moved.Node {
		t.Fatalf("tenant still on the dead node %s", got)
	}
	t.Logf("hooks followed the tenant from %s to %s, then to %s after %s died", from, moved.Node, f.owner("acme"), moved.Node)
}
