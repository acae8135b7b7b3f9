package hooks

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/dop251/goja"
	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	_ "github.com/pocketbase/pocketbase/migrations"
)

// tenant is a real PocketBase app with its hooks attached and served.
type tenant struct {
	app     *core.BaseApp
	pool    *Pool
	handler http.Handler
	token   string
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.CPULimit = 200 * time.Millisecond
	cfg.CPUPerMinute = 10 * time.Second
	cfg.WallLimit = 2 * time.Second
	cfg.Runtimes = 2
	return cfg
}

func newTenant(t testing.TB, cfg Config) *tenant {
	t.Helper()
	app := core.NewBaseApp(core.BaseAppConfig{DataDir: t.TempDir()})
	if err := app.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	if err := app.RunAllMigrations(); err != nil {
		t.Fatal(err)
	}
	posts := core.NewBaseCollection("posts")
	posts.Fields.Add(&core.TextField{Name: "title"}, &core.NumberField{Name: "n"})
	open := ""
	posts.ListRule, posts.ViewRule, posts.CreateRule, posts.UpdateRule = &open, &open, &open, &open
	if err := app.Save(posts); err != nil {
		t.Fatal(err)
	}
	su, _ := app.FindCollectionByNameOrId(core.CollectionNameSuperusers)
	rec := core.NewRecord(su)
	rec.SetEmail("admin@example.com")
	rec.SetPassword("password-123")
	if err := app.Save(rec); err != nil {
		t.Fatal(err)
	}
	token, err := rec.NewStaticAuthToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Attach(app, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r, err := apis.NewRouter(app)
	if err != nil {
		t.Fatal(err)
	}
	pool.BindRouter(r)
	var handler http.Handler
	err = app.OnServe().Trigger(&core.ServeEvent{App: app, Router: r, Server: &http.Server{}}, func(e *core.ServeEvent) error {
		mux, err := e.Router.BuildMux()
		handler = mux
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_ = app.ResetBootstrapState()
	})
	return &tenant{app: app, pool: pool, handler: handler, token: token}
}

func (tn *tenant) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", tn.token)
	w := httptest.NewRecorder()
	tn.handler.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// put stores a hook through the tenant's API, as its admin would.
func (tn *tenant) put(t testing.TB, name, code string) {
	t.Helper()
	col, _ := tn.app.FindCollectionByNameOrId(hooksCollection)
	rec, err := tn.app.FindFirstRecordByData(col, "name", name)
	body, _ := json.Marshal(map[string]any{"name": name, "code": code, "enabled": true})
	var status int
	var out string
	if err != nil {
		status, out = tn.do(t, "POST", "/api/collections/_hooks/records", string(body))
	} else {
		status, out = tn.do(t, "PATCH", "/api/collections/_hooks/records/"+rec.Id, string(body))
	}
	if status != 200 {
		t.Fatalf("store hook %s: %d %s", name, status, out)
	}
}

// waitHook waits until the loaded generation has hook name in a state
// cond accepts (a reload follows a change asynchronously).
func (tn *tenant) waitHook(t testing.TB, name string, cond func(HookStatus) bool) HookStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, h := range tn.pool.Status().Hooks {
			if h.Name == name && cond(h) {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook %s never reached the expected state: %+v", name, tn.pool.Status().Hooks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func loaded(h HookStatus) bool { return h.Loaded }

func (tn *tenant) hookStatus(t testing.TB, name string) HookStatus {
	t.Helper()
	for _, h := range tn.pool.Status().Hooks {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("hook %s not in status", name)
	return HookStatus{}
}

func TestRecordHooksChangeAndRejectWrites(t *testing.T) {
	tn := newTenant(t, testConfig())
	tn.put(t, "posts.pb.js", `
onRecordCreateRequest((e) => {
  if (e.record.get("title") === "forbidden") {
    throw new BadRequestError("titles may not be forbidden")
  }
  e.record.set("title", e.record.get("title").toUpperCase())
  e.next()
}, "posts")

onRecordAfterCreateSuccess((e) => {
  e.record.set("n", 42)
  $app.save(e.record)
  e.next()
}, "posts")
`)
	tn.waitHook(t, "posts.pb.js", loaded)

	status, body := tn.do(t, "POST", "/api/collections/posts/records", `{"title":"hello"}`)
	if status != 200 || !strings.Contains(body, `"title":"HELLO"`) {
		t.Fatalf("create through hook: %d %s", status, body)
	}
	var rec struct{ ID string }
	_ = json.Unmarshal([]byte(body), &rec)
	stored, err := tn.app.FindRecordById("posts", rec.ID)
	if err != nil || stored.GetInt("n") != 42 || stored.GetString("title") != "HELLO" {
		t.Fatalf("after-success hook did not update the record: %v %v", err, stored)
	}
	status, body = tn.do(t, "POST", "/api/collections/posts/records", `{"title":"forbidden"}`)
	if status != 400 || !strings.Contains(body, "ay not be forbidden") {
		t.Fatalf("rejected write: %d %s", status, body)
	}
	if n, _ := tn.app.CountRecords("posts"); n != 1 {
		t.Fatalf("the rejected write was stored: %d records", n)
	}
	hs := tn.hookStatus(t, "posts.pb.js")
	if !hs.Loaded || hs.Runs < 3 || hs.Errors != 1 || !strings.Contains(hs.LastError, "posts.pb.js:4") {
		t.Fatalf("status: %+v", hs)
	}
	if got := strings.Join(hs.Binds, ";"); got != "onRecordCreateRequest(posts);onRecordAfterCreateSuccess(posts)" {
		t.Fatalf("binds: %s", got)
	}
	// A reload (here: another hook added) keeps the counts of the hooks
	// it keeps.
	tn.put(t, "other.pb.js", `routerAdd("GET", "/api/other", (e) => e.string(200, "other"))`)
	tn.waitHook(t, "other.pb.js", loaded)
	if again := tn.hookStatus(t, "posts.pb.js"); again.Runs != hs.Runs || again.Errors != hs.Errors || again.LastError != hs.LastError {
		t.Fatalf("counts after a reload: %+v, before %+v", again, hs)
	}
	if tot := tn.pool.Totals(); tot.Runs != hs.Runs || tot.Errors != 1 || tot.CPU <= 0 || tot.Runtimes < 1 {
		t.Fatalf("totals: %+v", tot)
	}
}

func TestRouteCronAndHotReload(t *testing.T) {
	tn := newTenant(t, testConfig())
	tn.put(t, "routes.pb.js", `
routerAdd("GET", "/api/hello/{name}", (e) => {
  return e.json(200, { hello: e.request.pathValue("name"), v: 1 })
})
cronAdd("ticker", "* * * * *", () => {
  const posts = $app.findCollectionByNameOrId("posts")
  const r = new Record(posts)
  r.set("title", "tick")
  $app.save(r)
})
`)
	tn.waitHook(t, "routes.pb.js", loaded)
	if status, body := tn.do(t, "GET", "/api/hello/ada", ""); status != 200 || !strings.Contains(body, `"hello":"ada"`) || !strings.Contains(body, `"v":1`) {
		t.Fatalf("custom route: %d %s", status, body)
	}
	// Built-in routes are unaffected; unknown paths keep PocketBase's 404.
	if status, _ := tn.do(t, "GET", "/api/health", ""); status != 200 {
		t.Fatalf("health: %d", status)
	}
	if status, body := tn.do(t, "GET", "/api/nothing-here", ""); status != 404 || !strings.Contains(body, `"status":404`) {
		t.Fatalf("unknown path: %d %s", status, body)
	}

	// The cron job is registered and fires on schedule.
	tn.app.Cron().SetInterval(100 * time.Millisecond)
	tn.app.Cron().Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _ := tn.app.CountRecords("posts"); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cron job never ran: %+v", tn.hookStatus(t, "routes.pb.js"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tn.app.Cron().Stop()

	// Edit: the new code serves within a second, the removed job is gone.
	start := time.Now()
	tn.put(t, "routes.pb.js", `routerAdd("GET", "/api/hello/{name}", (e) => e.json(200, { hello: e.request.pathValue("name"), v: 2 }))`)
	for {
		if _, body := tn.do(t, "GET", "/api/hello/ada", ""); strings.Contains(body, `"v":2`) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the edit did not take effect within a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, j := range tn.app.Cron().Jobs() {
		if j.Id() == "ticker" {
			t.Fatal("the removed cron job is still scheduled")
		}
	}
	// Disabling the hook removes its route.
	col, _ := tn.app.FindCollectionByNameOrId(hooksCollection)
	rec, _ := tn.app.FindFirstRecordByData(col, "name", "routes.pb.js")
	if status, body := tn.do(t, "PATCH", "/api/collections/_hooks/records/"+rec.Id, `{"enabled":false}`); status != 200 {
		t.Fatalf("disable: %d %s", status, body)
	}
	tn.waitHook(t, "routes.pb.js", func(h HookStatus) bool { return !h.Enabled })
	if status, _ := tn.do(t, "GET", "/api/hello/ada", ""); status != 404 {
		t.Fatalf("disabled route still served: %d", status)
	}
}

func TestBrokenHooksAreReportedAndOthersKeepRunning(t *testing.T) {
	tn := newTenant(t, testConfig())
	tn.put(t, "good.pb.js", `routerAdd("GET", "/api/good", (e) => e.string(200, "fine"))`)

	// A syntax error is refused at save, with its line; nothing changes.
	body, _ := json.Marshal(map[string]any{"name": "bad.pb.js", "enabled": true, "code": "routerAdd(\"GET\", \"/x\", (e) => {\n  return e.string(200, 'x'\n})"})
	status, out := tn.do(t, "POST", "/api/collections/_hooks/records", string(body))
	if status != 400 || !strings.Contains(out, "validation_hook_syntax") || !strings.Contains(out, "Line 3") {
		t.Fatalf("syntax error: %d %s", status, out)
	}
	if n, _ := tn.app.CountRecords(hooksCollection); n != 1 {
		t.Fatalf("the refused hook was stored: %d hooks", n)
	}

	// A hook that throws while loading (stored without validation, as an
	// import of old data could) is reported with its line and left out.
	col, _ := tn.app.FindCollectionByNameOrId(hooksCollection)
	rec := core.NewRecord(col)
	rec.Set("name", "throws.pb.js")
	rec.Set("enabled", true)
	rec.Set("code", "routerAdd(\"GET\", \"/api/throws\", (e) => e.string(200, 'no'))\n\nnotDefined()\n")
	if err := tn.app.SaveNoValidate(rec); err != nil {
		t.Fatal(err)
	}
	tn.waitHook(t, "throws.pb.js", func(HookStatus) bool { return true })
	hs := tn.hookStatus(t, "throws.pb.js")
	if hs.Loaded || !strings.Contains(hs.Error, "notDefined is not defined") || !strings.Contains(hs.Error, "throws.pb.js:3") {
		t.Fatalf("load error: %+v", hs)
	}
	if status, _ := tn.do(t, "GET", "/api/throws", ""); status != 404 {
		t.Fatalf("a hook that failed to load kept its route: %d", status)
	}
	if status, out := tn.do(t, "GET", "/api/good", ""); status != 200 || out != "fine" {
		t.Fatalf("the good hook stopped: %d %s", status, out)
	}

	// An exception while running fails that request, names the line, and
	// the tenant keeps serving.
	tn.put(t, "boom.pb.js", "routerAdd(\"GET\", \"/api/boom\", (e) => {\n  const x = 1\n  throw new Error(\"boom\")\n})")
	waitRoute(t, tn, "/api/boom", 400)
	hs = tn.hookStatus(t, "boom.pb.js")
	if hs.Errors < 1 || !strings.Contains(hs.LastError, "boom") || !strings.Contains(hs.LastError, "boom.pb.js:3") {
		t.Fatalf("runtime error: %+v", hs)
	}
	if status, _ := tn.do(t, "GET", "/api/good", ""); status != 200 {
		t.Fatalf("the good hook stopped after an exception: %d", status)
	}
	// The status API reports the same (superusers only).
	status, out = tn.do(t, "GET", "/api/pbe/hooks", "")
	if status != 200 || !strings.Contains(out, "notDefined is not defined") || !strings.Contains(out, `"name":"boom.pb.js"`) {
		t.Fatalf("status API: %d %s", status, out)
	}
	req := httptest.NewRequest("GET", "/api/pbe/hooks", nil)
	w := httptest.NewRecorder()
	tn.handler.ServeHTTP(w, req)
	if w.Code != 401 {
		t.Fatalf("status API without a superuser: %d", w.Code)
	}
}

// waitRoute waits until path answers want (a reload is asynchronous).
func waitRoute(t *testing.T, tn *tenant, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body := tn.do(t, "GET", path, "")
		if status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s, want %d", path, status, body, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInfiniteLoopIsInterrupted(t *testing.T) {
	tn := newTenant(t, testConfig())
	other := newTenant(t, testConfig())
	tn.put(t, "loop.pb.js", `
routerAdd("GET", "/api/loop", (e) => { while (true) {} })
routerAdd("GET", "/api/ok", (e) => e.string(200, "ok"))
`)
	other.put(t, "ok.pb.js", `routerAdd("GET", "/api/ok", (e) => e.string(200, "other"))`)
	waitRoute(t, tn, "/api/ok", 200)
	waitRoute(t, other, "/api/ok", 200)

	done := make(chan string)
	go func() {
		status, body := tn.do(t, "GET", "/api/loop", "")
		done <- fmt.Sprintf("%d %s", status, body)
	}()
	// While the loop runs, the neighbour and the tenant's other route serve.
	served := 0
	var res string
wait:
	for {
		select {
		case res = <-done:
			break wait
		default:
		}
		if status, body := other.do(t, "GET", "/api/ok", ""); status != 200 || body != "other" {
			t.Fatalf("neighbour: %d %s", status, body)
		}
		if status, _ := tn.do(t, "GET", "/api/ok", ""); status != 200 {
			t.Fatalf("the tenant's other route: %d", status)
		}
		served++
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.HasPrefix(res, "500") || !strings.Contains(res, "CPU time limit") {
		t.Fatalf("the loop was not stopped as it should: %s", res)
	}
	if served == 0 {
		t.Fatal("nothing was served while the loop ran")
	}
	hs := tn.hookStatus(t, "loop.pb.js")
	if hs.Errors != 1 || !strings.Contains(hs.LastError, "CPU time limit") {
		t.Fatalf("status: %+v", hs)
	}
	// The interrupted runtime is reusable.
	if status, _ := tn.do(t, "GET", "/api/ok", ""); status != 200 {
		t.Fatalf("after the interrupt: %d", status)
	}
}

// evalRoute gives tn a route that evaluates JavaScript, and returns a
// function that runs code there: whether it succeeded, and its value or
// what it threw.
func evalRoute(t *testing.T, tn *tenant) func(code string) (bool, string) {
	t.Helper()
	tn.put(t, "sandbox.pb.js", `
routerAdd("POST", "/api/try", (e) => {
  const code = e.requestInfo().body.code
  try {
    return e.json(200, { ok: true, value: String(eval(code)) })
  } catch (err) {
    return e.json(200, { ok: false, error: String(err) })
  }
})
`)
	tn.waitHook(t, "sandbox.pb.js", loaded)
	return func(code string) (bool, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"code": code})
		status, out := tn.do(t, "POST", "/api/try", string(body))
		var r struct {
			OK    bool
			Value string
			Error string
		}
		_ = json.Unmarshal([]byte(out), &r)
		switch {
		case status != 200:
			return false, fmt.Sprintf("%d %s", status, out)
		case r.OK:
			return true, r.Value
		}
		return false, r.Error
	}
}

func TestSandbox(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(make([]byte, 2<<20))
			return
		case "/redirect":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, `{"reached":true}`)
	}))
	defer target.Close()
	t.Setenv("PBE_TEST_SECRET_ENV", "process-secret")

	tn := newTenant(t, testConfig())
	col, _ := tn.app.FindCollectionByNameOrId(secretsCollection)
	sec := core.NewRecord(col)
	sec.Set("name", "API_KEY")
	sec.Set("value", "tenant-secret")
	if err := tn.app.Save(sec); err != nil {
		t.Fatal(err)
	}
	try := evalRoute(t, tn)
	refused := func(code, want string) {
		t.Helper()
		if ok, msg := try(code); ok || !strings.Contains(msg, want) {
			t.Errorf("%s: ok=%v %s (want refused with %q)", code, ok, msg, want)
		}
	}
	refused(`$os.exit(1)`, "not available to tenant hooks")
	refused(`$os.cmd("sh", "-c", "echo hi").output()`, "not available to tenant hooks")
	refused(`$os.readFile("/etc/passwd")`, "not available to tenant hooks")
	refused(`$filesystem.fileFromPath("/etc/passwd")`, "not available to tenant hooks")
	refused(`$template.loadFiles("/etc/passwd")`, "not available to tenant hooks")
	refused(`require("fs")`, "not available to tenant hooks")
	refused(`$filepath.glob("/*")`, "not available to tenant hooks")
	refused(`$filesystem.local("/")`, "not available to tenant hooks")
	for _, hidden := range []string{"$app.restart", "$app.cron", "$app.onRecordCreate", "$app.onModelUpdate", "$app.bootstrap", "$app.resetBootstrapState"} {
		if ok, v := try("typeof " + hidden); !ok || v != "undefined" {
			t.Errorf("%s is visible: %v %s", hidden, ok, v)
		}
	}
	refused(`$app.db().newQuery("SELECT load_extension('/nonexistent.so')").execute()`, "not authorized")
	// What lies under the query builder opens any file the process can
	// reach (another tenant's data.db); a copy of the app without hooks, a
	// mail client's OnSend and a cobra command would undo the platform's
	// guards or read the process's arguments.
	var underneath []string
	for _, db := range []string{"db()", "auxDB()", "concurrentDB()", "nonconcurrentDB()", "auxConcurrentDB()", "auxNonconcurrentDB()"} {
		for _, m := range []string{"db", "close", "logFunc", "queryLogFunc", "execLogFunc", "perfFunc", "builder"} {
			underneath = append(underneath, "$app."+db+"."+m)
		}
	}
	underneath = append(underneath, "$app.unsafeWithoutHooks", "$app.newMailClient().onSend")
	for _, hidden := range underneath {
		if ok, v := try("typeof " + hidden); !ok || v != "undefined" {
			t.Errorf("%s is visible: %v %s", hidden, ok, v)
		}
	}
	refused(`new Command({use: "x"})`, "not available to tenant hooks")
	for _, fn := range []string{"readfile('/etc/passwd')", "writefile('/tmp/pbe-hook', 'x')", "edit('x')", "fts3_tokenizer('simple')"} {
		refused(`$app.db().newQuery("SELECT `+fn+`").execute()`, "")
	}
	if ok, v := try(`(() => { const r = new DynamicModel({n: 0}); $app.concurrentDB().newQuery("SELECT 40 + 2 AS n").one(r); return r.n })()`); !ok || v != "42" {
		t.Errorf("the query builder: %v %s", ok, v)
	}
	if ok, v := try(`$app.findCollectionByNameOrId("posts").name`); !ok || v != "posts" {
		t.Errorf("the app's ordinary methods: %v %s", ok, v)
	}
	for _, url := range []string{target.URL, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]:1/", "http://localhost:1/"} {
		refused(fmt.Sprintf(`$http.send({url: %q, timeout: 2}).statusCode`, url), "public internet addresses")
	}
	refused(fmt.Sprintf(`$filesystem.fileFromURL(%q)`, target.URL), "public internet addresses")
	if ok, v := try(`$os.getenv("API_KEY") + "," + process.env.API_KEY + "," + $os.getenv("PBE_TEST_SECRET_ENV") + "," + (process.env.PBE_TEST_SECRET_ENV || "")`); !ok || v != "tenant-secret,tenant-secret,," {
		t.Errorf("secrets: %v %s", ok, v)
	}
	if os.Getenv("PBE_TEST_SECRET_ENV") != "process-secret" {
		t.Fatal("the process environment changed")
	}

	// With the test server's range allowed, $http.send works and its
	// response size is capped.
	cfg := testConfig()
	cfg.HTTPAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	cfg.HTTPMaxBytes = 1 << 20
	tn2 := newTenant(t, cfg)
	tn2.put(t, "fetch.pb.js", `
routerAdd("GET", "/api/fetch", (e) => {
  const q = e.request.url.query()
  const res = $http.send({ url: q.get("u"), timeout: +(q.get("timeout") || 10) })
  return e.json(200, res.json)
})`)
	waitRoute(t, tn2, "/api/fetch?u="+target.URL, 200)
	if status, body := tn2.do(t, "GET", "/api/fetch?u="+target.URL+"/big", ""); status != 400 {
		t.Fatalf("oversized response: %d %s", status, body)
	}
	if hs := tn2.hookStatus(t, "fetch.pb.js"); !strings.Contains(hs.LastError, "larger than the limit") {
		t.Fatalf("oversized response error: %+v", hs)
	}
	// A redirect is checked like the first address: to another loopback
	// address, not allowed, it fails.
	denied := strings.Replace(target.URL, "127.0.0.1", "127.0.0.2", 1)
	if status, body := tn2.do(t, "GET", "/api/fetch?u="+url.QueryEscape(target.URL+"/redirect?to="+url.QueryEscape(denied)), ""); status != 400 {
		t.Fatalf("redirect to a denied address: %d %s", status, body)
	}
	if hs := tn2.hookStatus(t, "fetch.pb.js"); !strings.Contains(hs.LastError, "public internet addresses") {
		t.Fatalf("redirect to a denied address: %+v", hs)
	}
	// The hook's timeout ends a request the server does not answer.
	if status, body := tn2.do(t, "GET", "/api/fetch?timeout=1&u="+url.QueryEscape(target.URL+"/slow"), ""); status != 400 {
		t.Fatalf("a server that does not answer: %d %s", status, body)
	}
	if hs := tn2.hookStatus(t, "fetch.pb.js"); !strings.Contains(strings.ToLower(hs.LastError), "timeout") && !strings.Contains(hs.LastError, "deadline") {
		t.Fatalf("a server that does not answer: %+v", hs)
	}
}

func TestMigrationsArePerTenant(t *testing.T) {
	a := newTenant(t, testConfig())
	b := newTenant(t, testConfig())
	seq := a.pool.Status().Generation
	status, out := a.do(t, "POST", "/api/pbe/hooks/import", `{
  "hooks": [{"name": "pb_hooks/count.pb.js", "code": "routerAdd('GET', '/api/notes/count', (e) => e.json(200, {n: $app.countRecords('notes')}))"}],
  "migrations": [{"name": "1700000000_notes.js", "code": "migrate((app) => { const c = new Collection({name: 'notes', type: 'base', fields: [{name: 'body', type: 'text'}]}); app.save(c) }, (app) => { app.delete(app.findCollectionByNameOrId('notes')) })"}]
}`)
	if status != 200 || !strings.Contains(out, `"1700000000_notes.js"`) {
		t.Fatalf("import: %d %s", status, out)
	}
	if a.pool.Status().Generation <= seq {
		t.Fatal("import did not reload")
	}
	if _, err := a.app.FindCollectionByNameOrId("notes"); err != nil {
		t.Fatalf("the migration did not run in its tenant: %v", err)
	}
	if status, body := a.do(t, "GET", "/api/notes/count", ""); status != 200 || !strings.Contains(body, `"n":0`) {
		t.Fatalf("imported hook: %d %s", status, body)
	}
	if _, err := b.app.FindCollectionByNameOrId("notes"); err == nil {
		t.Fatal("one tenant's migration ran in another")
	}
	// The migration ran once: a reload does not run it again.
	a.pool.Reload()
	if got := a.pool.Status().Migrations; len(got) != 0 {
		t.Fatalf("migration applied again: %v", got)
	}
	// A file that does not compile fails the whole import.
	status, out = b.do(t, "POST", "/api/pbe/hooks/import", `{"hooks": [{"name": "ok.pb.js", "code": "1"}, {"name": "bad.pb.js", "code": "routerAdd("}]}`)
	if status != 400 || !strings.Contains(out, "bad.pb.js") {
		t.Fatalf("bad import: %d %s", status, out)
	}
	if n, _ := b.app.CountRecords(hooksCollection); n != 0 {
		t.Fatalf("a failed import stored %d hooks", n)
	}
}

func TestOrderDeleteAndTenantLog(t *testing.T) {
	tn := newTenant(t, testConfig())
	// Two hooks on the same event run in their sort order.
	col, _ := tn.app.FindCollectionByNameOrId(hooksCollection)
	for _, h := range []struct {
		name, suffix string
		sort         int
	}{{"b-second.pb.js", "2", 20}, {"a-first.pb.js", "1", 10}} {
		rec := core.NewRecord(col)
		rec.Set("name", h.name)
		rec.Set("enabled", true)
		rec.Set("sort", h.sort)
		rec.Set("code", fmt.Sprintf(`onRecordCreateRequest((e) => { e.record.set("title", e.record.get("title") + %q); e.next() }, "posts")`, h.suffix))
		if err := tn.app.Save(rec); err != nil {
			t.Fatal(err)
		}
	}
	tn.pool.Reload()
	if status, body := tn.do(t, "POST", "/api/collections/posts/records", `{"title":"x"}`); status != 200 || !strings.Contains(body, `"title":"x12"`) {
		t.Fatalf("order: %d %s", status, body)
	}
	// Reordering swaps them.
	rec, _ := tn.app.FindFirstRecordByData(col, "name", "b-second.pb.js")
	rec.Set("sort", 1)
	if err := tn.app.Save(rec); err != nil {
		t.Fatal(err)
	}
	tn.pool.Reload()
	if _, body := tn.do(t, "POST", "/api/collections/posts/records", `{"title":"x"}`); !strings.Contains(body, `"title":"x21"`) {
		t.Fatalf("reordered: %s", body)
	}
	// Deleting one through the API stops it.
	if status, body := tn.do(t, "DELETE", "/api/collections/_hooks/records/"+rec.Id, ""); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := tn.do(t, "POST", "/api/collections/posts/records", `{"title":"x"}`)
		if strings.Contains(body, `"title":"x1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after delete: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A failing hook is in the tenant's own log, with its name and line.
	tn.put(t, "fails.pb.js", "routerAdd(\"GET\", \"/api/fails\", (e) => {\n  console.log(\"about to fail\", {attempt: 1})\n  throw new Error(\"logged failure\")\n})")
	waitRoute(t, tn, "/api/fails", 400)
	deadline = time.Now().Add(10 * time.Second)
	for {
		logs := []*core.Log{}
		err := tn.app.LogQuery().AndWhere(dbxLike("message", "logged failure")).All(&logs)
		if err == nil && len(logs) > 0 {
			if !strings.Contains(logs[0].Message, "fails.pb.js:3") || logs[0].Data["hook"] != "fails.pb.js" {
				t.Fatalf("log entry: %s %v", logs[0].Message, logs[0].Data)
			}
			printed := []*core.Log{}
			_ = tn.app.LogQuery().AndWhere(dbxLike("message", "about to fail")).All(&printed)
			if len(printed) == 0 || printed[0].Message != `about to fail {"attempt":1}` {
				t.Fatalf("console.log entry: %+v", printed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log entry for the failing hook (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// So is a hook that fails to load.
	tn.put(t, "broken.pb.js", "// loads, then fails\nnotDefinedAtLoad()\n")
	tn.waitHook(t, "broken.pb.js", func(hs HookStatus) bool { return hs.Error != "" })
	deadline = time.Now().Add(10 * time.Second)
	for {
		logs := []*core.Log{}
		err := tn.app.LogQuery().AndWhere(dbxLike("message", "hook failed to load")).All(&logs)
		if err == nil && len(logs) > 0 {
			if logs[0].Data["hook"] != "broken.pb.js" || !strings.Contains(fmt.Sprint(logs[0].Data["error"]), "broken.pb.js:") {
				t.Fatalf("load failure log entry: %s %v", logs[0].Message, logs[0].Data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log entry for the hook that failed to load (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dbxLike(col, s string) dbx.Expression { return dbx.Like(col, s) }

// TestRuntimesAreReleased checks that nothing keeps a runtime alive once
// its tenant's pool is closed, nor a loader once its load is done.
func TestRuntimesAreReleased(t *testing.T) {
	tn := newTenant(t, testConfig())
	tn.put(t, "r.pb.js", `routerAdd("GET", "/api/r", (e) => e.string(200, "r"))`)
	waitRoute(t, tn, "/api/r", 200)
	var refs []weak.Pointer[goja.Runtime]
	for {
		select {
		case rt := <-tn.pool.idle:
			refs = append(refs, weak.Make(rt.vm))
			continue
		default:
		}
		break
	}
	if len(refs) == 0 {
		t.Fatal("no idle runtime after a request")
	}
	// A loader made by a reload is garbage once the reload is done.
	rt, err := tn.pool.newRuntime()
	if err != nil {
		t.Fatal(err)
	}
	refs = append(refs, weak.Make(rt.vm))
	rt = nil
	tn.pool.Close()
	for range 3 {
		goruntime.GC()
	}
	for i, r := range refs {
		if r.Value() != nil {
			t.Fatalf("runtime %d is still reachable after its pool closed", i)
		}
	}
}

// TestCPUPerMinute checks a tenant that keeps its hooks busy is refused
// once it has used its minute's CPU time, and its neighbour is not.
func TestCPUPerMinute(t *testing.T) {
	cfg := testConfig()
	cfg.CPUPerMinute = 300 * time.Millisecond
	tn := newTenant(t, cfg)
	other := newTenant(t, cfg)
	tn.put(t, "spin.pb.js", `
routerAdd("GET", "/api/spin", (e) => { while (true) {} })
routerAdd("GET", "/api/ok", (e) => e.string(200, "ok"))
`)
	other.put(t, "ok.pb.js", `routerAdd("GET", "/api/ok", (e) => e.string(200, "ok"))`)
	waitRoute(t, tn, "/api/ok", 200)
	waitRoute(t, other, "/api/ok", 200)
	for range 2 {
		if status, body := tn.do(t, "GET", "/api/spin", ""); status != 500 {
			t.Fatalf("spin: %d %s", status, body)
		}
	}
	status, body := tn.do(t, "GET", "/api/ok", "")
	if status != 429 || !strings.Contains(body, "CPU time for this minute") {
		t.Fatalf("after its minute's CPU time: %d %s", status, body)
	}
	if status, _ := other.do(t, "GET", "/api/ok", ""); status != 200 {
		t.Fatalf("the neighbour was refused: %d", status)
	}
	// Requests that run no hook still serve.
	if status, _ := tn.do(t, "GET", "/api/health", ""); status != 200 {
		t.Fatalf("health: %d", status)
	}
}
