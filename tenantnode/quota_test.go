package tenantnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// changeRecord changes tenant id's registry record as the control plane
// does for an operator's PATCH, and returns the new record.
func changeRecord(t *testing.T, reg *registry, id string, u store.UpdateTenant) cluster.Tenant {
	t.Helper()
	u.ID = id
	res, err := reg.apply(store.CmdUpdateTenant, u)
	if err != nil {
		t.Fatalf("update record of %s: %v", id, err)
	}
	return res.(cluster.Tenant)
}

// push gives the node a changed record, as the control plane's update
// order does, and requires that the active tenant took it.
func push(t *testing.T, n *node, rec cluster.Tenant) {
	t.Helper()
	changed, err := n.UpdateTenant(context.Background(), rec)
	if err != nil || !changed {
		t.Fatalf("UpdateTenant(%s): changed %v, %v; want true, nil", rec.ID, changed, err)
	}
}

// superuserToken signs in as the superuser setup created.
func superuserToken(t *testing.T, n *node, id string) string {
	t.Helper()
	w := n.serve(t, id, "POST", "/api/collections/_superusers/auth-with-password",
		fmt.Sprintf(`{"identity":"admin@%s.test","password":"password-%s"}`, id, id))
	if w.Code != http.StatusOK {
		t.Fatalf("auth: %d %s", w.Code, w.Body)
	}
	var res struct{ Token string }
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	return res.Token
}

// activeInstance returns tenant id's open instance on n.
func activeInstance(t *testing.T, n *node, id string) *instance {
	t.Helper()
	n.mu.Lock()
	e, ok := n.active.Peek(id)
	n.mu.Unlock()
	if !ok {
		t.Fatalf("tenant %s is not active", id)
	}
	<-e.ready
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.inst
}

// errorBody decodes a platform error answer.
func errorBody(t *testing.T, w *httptest.ResponseRecorder) (code string, data map[string]float64) {
	t.Helper()
	var body struct {
		Code string             `json:"code"`
		Data map[string]float64 `json:"data"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return body.Code, body.Data
}

func headerInt(t *testing.T, w *httptest.ResponseRecorder, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(w.Header().Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q: %v", name, w.Header().Get(name), err)
	}
	return v
}

func TestUpdateTenant_SuspensionRefusesEveryRequestUntilLifted(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	n.post(t, id, "before")
	tok := superuserToken(t, n, id)

	for _, tc := range []struct {
		name string
		u    store.UpdateTenant
		rec  func(cluster.Tenant) cluster.Tenant
	}{
		{name: "tenant suspended", u: store.UpdateTenant{Suspended: ptr(true)}},
		{name: "owner suspended", rec: func(r cluster.Tenant) cluster.Tenant { r.OwnerSuspended = true; return r }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := reg.Tenant(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			rec := cur
			if tc.rec != nil {
				rec = tc.rec(cur)
			} else {
				rec = changeRecord(t, reg, id, tc.u)
			}
			push(t, n, rec)
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/api/collections/posts/records", ""},
				{"POST", "/api/collections/posts/records", `{"title":"while suspended"}`},
				{"GET", "/_/", ""},
				{"GET", "/api/realtime", ""},
				{"GET", "/api/files/posts/x/y.txt", ""},
				{"POST", "/api/collections/_superusers/auth-with-password", `{"identity":"admin@acme.test","password":"password-acme"}`},
			} {
				// A realtime stream that got through would never end: bound it.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req := httptest.NewRequestWithContext(ctx, r.method, r.path, strings.NewReader(r.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", tok)
				w := httptest.NewRecorder()
				n.ServeTenant(w, req, id)
				cancel()
				if w.Code != http.StatusForbidden {
					t.Errorf("%s %s: got %d, want 403", r.method, r.path, w.Code)
					continue
				}
				if code, _ := errorBody(t, w); code != cluster.ErrTenantSuspended.Code {
					t.Errorf("%s %s: code %q, want %q", r.method, r.path, code, cluster.ErrTenantSuspended.Code)
				}
			}

			lifted := rec
			if tc.rec == nil {
				lifted = changeRecord(t, reg, id, store.UpdateTenant{Suspended: ptr(false)})
			} else {
				lifted.OwnerSuspended = false
			}
			push(t, n, lifted)
			if got := n.count(t, id); got != 1 {
				t.Errorf("posts after the suspension: got %d, want 1 (a write while suspended reached PocketBase)", got)
			}
			if w := n.serve(t, id, "GET", "/_/", ""); w.Code != http.StatusOK {
				t.Errorf("admin UI after the suspension was lifted: got %d, want 200", w.Code)
			}
		})
	}

	t.Run("suspension in the registry applies at activation", func(t *testing.T) {
		changeRecord(t, reg, id, store.UpdateTenant{Suspended: ptr(true)})
		if _, err := n.Evict(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if w := n.serve(t, id, "GET", "/api/collections/posts/records", ""); w.Code != http.StatusForbidden {
			t.Errorf("reactivated suspended tenant: got %d, want 403", w.Code)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestQuota_RequestsPerDay(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	if w := n.serve(t, id, "GET", "/api/health", ""); w.Header().Get(headerRateLimit) != "" {
		t.Errorf("a tenant without a request quota got %s: %q", headerRateLimit, w.Header().Get(headerRateLimit))
	}
	const limit = 5
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{RequestsPerDay: limit}}))

	before := time.Now().Unix()
	var reset int64
	for i := 1; i <= limit; i++ {
		w := n.serve(t, id, "GET", "/api/collections/posts/records", "")
		if w.Code != http.StatusOK {
			t.Fatalf("request %d of %d: got %d, want 200: %s", i, limit, w.Code, w.Body)
		}
		if got := headerInt(t, w, headerRateLimit); got != limit {
			t.Errorf("request %d: %s = %d, want %d", i, headerRateLimit, got, limit)
		}
		if got := headerInt(t, w, headerRateRemaining); got != int64(limit-i) {
			t.Errorf("request %d: %s = %d, want %d", i, headerRateRemaining, got, limit-i)
		}
		r := headerInt(t, w, headerRateReset)
		if i == 1 {
			reset = r
			if reset < before+requestWindowSeconds || reset > time.Now().Unix()+requestWindowSeconds {
				t.Errorf("%s = %d: the window should end 24 h after the first request (%d)", headerRateReset, reset, before)
			}
		} else if r != reset {
			t.Errorf("request %d: %s moved from %d to %d inside one window", i, headerRateReset, reset, r)
		}
	}

	w := n.serve(t, id, "POST", "/api/collections/posts/records", `{"title":"one too many"}`)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("request %d: got %d, want 429: %s", limit+1, w.Code, w.Body)
	}
	code, data := errorBody(t, w)
	if code != cluster.ErrRequestQuota.Code {
		t.Errorf("code %q, want %q", code, cluster.ErrRequestQuota.Code)
	}
	if data["limit"] != limit || data["used"] != limit || int64(data["reset"]) != reset {
		t.Errorf("data %v, want limit %d, used %d, reset %d", data, limit, limit, reset)
	}
	retry := headerInt(t, w, "Retry-After")
	if retry < requestWindowSeconds-60 || retry > requestWindowSeconds {
		t.Errorf("Retry-After %d, want the seconds to the window's end (about %d)", retry, requestWindowSeconds)
	}
	if got := headerInt(t, w, headerRateRemaining); got != 0 {
		t.Errorf("429: %s = %d, want 0", headerRateRemaining, got)
	}

	// A raised quota applies at once, and the window goes on.
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{RequestsPerDay: limit + 2}}))
	w = n.serve(t, id, "GET", "/api/health", "")
	if w.Code != http.StatusOK || headerInt(t, w, headerRateRemaining) != 1 || headerInt(t, w, headerRateReset) != reset {
		t.Errorf("after raising the quota: %d, remaining %s, reset %s; want 200, 1, %d",
			w.Code, w.Header().Get(headerRateRemaining), w.Header().Get(headerRateReset), reset)
	}
	if got := n.count(t, id); got != 0 {
		t.Errorf("posts: got %d, want 0 (the refused write reached PocketBase)", got)
	}
}

func TestQuota_RealtimeConnectionCountsOnce(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{RequestsPerDay: 100}}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.ServeTenant(w, r, id) }))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/realtime", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get(headerRateRemaining); got != "99" {
		t.Fatalf("realtime connection: %s = %q, want 99", headerRateRemaining, got)
	}
	var clientID string
	sc := bufio.NewScanner(resp.Body)
	for clientID == "" && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
			var ev struct{ ClientID string }
			_ = json.Unmarshal([]byte(data), &ev)
			clientID = ev.ClientID
		}
	}
	if clientID == "" {
		t.Fatal("no PB_CONNECT event on the realtime stream")
	}
	// Subscribing is a request of its own; the events the stream then
	// carries are not.
	w := n.serve(t, id, "POST", "/api/realtime", `{"clientId":"`+clientID+`","subscriptions":["posts"]}`)
	if w.Code != http.StatusNoContent || w.Header().Get(headerRateRemaining) != "98" {
		t.Fatalf("subscribe: %d, remaining %s; want 204, 98: %s", w.Code, w.Header().Get(headerRateRemaining), w.Body)
	}
	for i := range 3 {
		n.post(t, id, fmt.Sprint("event-", i)) // three requests, three events on the stream
	}
	for events := 0; events < 3 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "event:posts") {
			events++
		}
	}
	if w := n.serve(t, id, "GET", "/api/health", ""); w.Header().Get(headerRateRemaining) != "94" {
		t.Errorf("after 1 stream, 1 subscribe, 3 writes: %s = %s, want 94", headerRateRemaining, w.Header().Get(headerRateRemaining))
	}
}

func TestQuota_RequestCountSurvivesEvictionAndMove(t *testing.T) {
	reg := newRegistry(t)
	n1 := newNode(t, reg, nil, nil)
	const id = "acme"
	n1.setup(t, id)
	const limit = 50
	rec := changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{RequestsPerDay: limit}})
	push(t, n1, rec)

	remaining := func(n *node) (int64, int64) {
		w := n.serve(t, id, "GET", "/api/health", "")
		if w.Code != http.StatusOK {
			t.Fatalf("health: %d %s", w.Code, w.Body)
		}
		return headerInt(t, w, headerRateRemaining), headerInt(t, w, headerRateReset)
	}
	for range 3 {
		remaining(n1)
	}
	left, reset := remaining(n1)
	if left != limit-4 {
		t.Fatalf("after 4 requests: remaining %d, want %d", left, limit-4)
	}

	t.Run("eviction", func(t *testing.T) {
		if active, err := n1.Evict(context.Background(), id); err != nil || !active {
			t.Fatalf("evict: %v, %v", active, err)
		}
		got, gotReset := remaining(n1)
		if got != limit-5 || gotReset != reset {
			t.Errorf("after eviction: remaining %d, reset %d; want %d, %d (the count restarted)", got, gotReset, limit-5, reset)
		}
	})

	t.Run("move to a node sharing the object store", func(t *testing.T) {
		n2 := newNode(t, reg, n1.objects, func(c *Config) { c.NodeID = "n2" })
		cur, err := reg.Tenant(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if err := n1.Release(context.Background(), id, cur.Epoch); err != nil {
			t.Fatal(err)
		}
		to, epoch, from := "n2", cur.Epoch+1, cur.Epoch
		changeRecord(t, reg, id, store.UpdateTenant{Node: &to, Epoch: &epoch, RestoreEpoch: &from})
		got, gotReset := remaining(n2)
		if got != limit-6 || gotReset != reset {
			t.Errorf("on the new node: remaining %d, reset %d; want %d, %d (the count did not move with the tenant)", got, gotReset, limit-6, reset)
		}
	})
}

func TestQuota_Storage(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	tok := superuserToken(t, n, id)
	if w := n.serve(t, id, "POST", "/api/collections",
		`{"name":"blobs","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
		  "fields":[{"name":"body","type":"text","max":100000}]}`, "Authorization", tok); w.Code != http.StatusOK {
		t.Fatalf("create collection: %d %s", w.Code, w.Body)
	}
	blob := `{"body":"` + strings.Repeat("x", 16<<10) + `"}`
	write := func() *httptest.ResponseRecorder {
		return n.serve(t, id, "POST", "/api/collections/blobs/records", blob)
	}

	// A quota below what the tenant uses: writes are refused at once, and
	// the answer says how much it uses.
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{StorageBytes: 1}}))
	w := write()
	if w.Code != http.StatusInsufficientStorage {
		t.Fatalf("write over quota: got %d, want 507: %s", w.Code, w.Body)
	}
	code, data := errorBody(t, w)
	if code != cluster.ErrStorageQuota.Code || data["limit"] != 1 || data["used"] < 4096 {
		t.Fatalf("507 body: code %q, data %v; want %q, limit 1, used the databases' size", code, data, cluster.ErrStorageQuota.Code)
	}
	used := int64(data["used"])

	// Raised live: accepted at once.
	const room = 256 << 10
	limit := used + room
	push(t, n, changeRecord(t, reg, id, store.UpdateTenant{Quota: &cluster.TenantQuota{StorageBytes: limit}}))
	if w := write(); w.Code != http.StatusOK {
		t.Fatalf("write after the quota was raised: got %d, want 200: %s", w.Code, w.Body)
	}

	// Fill it: the measure follows within a second, so write at a pace.
	writes := 1
	waitFor(t, "a write refused at the storage quota", func() bool {
		w := write()
		if w.Code == http.StatusOK {
			writes++
			time.Sleep(100 * time.Millisecond)
			return false
		}
		if w.Code != http.StatusInsufficientStorage {
			t.Fatalf("write: got %d, want 200 or 507: %s", w.Code, w.Body)
		}
		return true
	})
	if writes < room/(16<<10)/2 {
		t.Errorf("refused after %d writes of 16 KiB into %d bytes of room", writes, room)
	}

	// Over quota: reads, sign-in, settings, deletes work; other writes do not.
	list := n.serve(t, id, "GET", "/api/collections/blobs/records?perPage=500&fields=id", "")
	if list.Code != http.StatusOK {
		t.Fatalf("list over quota: got %d, want 200", list.Code)
	}
	var page struct{ Items []struct{ ID string } }
	if err := json.Unmarshal(list.Body.Bytes(), &page); err != nil || len(page.Items) != writes {
		t.Fatalf("list: %d items, %v; want %d", len(page.Items), err, writes)
	}
	for _, r := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/collections/blobs/records/" + page.Items[0].ID, "", http.StatusOK},
		{"PATCH", "/api/collections/blobs/records/" + page.Items[0].ID, `{"body":"y"}`, http.StatusInsufficientStorage},
		{"POST", "/api/collections/_superusers/auth-with-password", `{"identity":"admin@acme.test","password":"password-acme"}`, http.StatusOK},
		{"POST", "/api/collections/_superusers/auth-refresh", "", http.StatusOK},
		{"PATCH", "/api/settings", `{"logs":{"maxDays":1}}`, http.StatusOK},
		{"POST", "/api/batch", `{"requests":[]}`, http.StatusInsufficientStorage},
	} {
		if w := n.serve(t, id, r.method, r.path, r.body, "Authorization", tok); w.Code != r.want {
			t.Errorf("over quota, %s %s: got %d, want %d: %s", r.method, r.path, w.Code, r.want, w.Body)
		}
	}

	// Deleting data brings the tenant back under its quota.
	for _, it := range page.Items {
		if w := n.serve(t, id, "DELETE", "/api/collections/blobs/records/"+it.ID, ""); w.Code != http.StatusNoContent {
			t.Fatalf("delete over quota: got %d, want 204: %s", w.Code, w.Body)
		}
	}
	waitFor(t, "a write accepted after deleting data", func() bool {
		w := write()
		if w.Code != http.StatusOK {
			time.Sleep(100 * time.Millisecond)
		}
		return w.Code == http.StatusOK
	})
}

func TestQuota_UploadedFilesCount(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	const id = "acme"
	n.setup(t, id)
	tok := superuserToken(t, n, id)
	if w := n.serve(t, id, "POST", "/api/collections",
		`{"name":"docs","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
		  "fields":[{"name":"file","type":"file","maxSelect":1,"maxSize":10000000}]}`, "Authorization", tok); w.Code != http.StatusOK {
		t.Fatalf("create collection: %d %s", w.Code, w.Body)
	}
	upload := func(method, path string, size int) *httptest.ResponseRecorder {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		part, _ := mw.CreateFormFile("file", "doc.bin")
		part.Write(bytes.Repeat([]byte{7}, size))
		mw.Close()
		req := httptest.NewRequest(method, path, &body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		w := httptest.NewRecorder()
		n.ServeTenant(w, req, id)
		if w.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		}
		return w
	}
	files := func() int64 { return activeInstance(t, n, id).quota.fileBytes.Load() }

	base := files()
	w := upload("POST", "/api/collections/docs/records", 300<<10)
	var rec struct{ ID string }
	json.Unmarshal(w.Body.Bytes(), &rec)
	if got := files() - base; got != 300<<10 {
		t.Fatalf("after a 300 KiB upload: files grew by %d, want %d", got, 300<<10)
	}
	upload("PATCH", "/api/collections/docs/records/"+rec.ID, 100<<10) // replaces the file
	if got := files() - base; got != 100<<10 {
		t.Fatalf("after replacing it with 100 KiB: files at %d above the start, want %d", got, 100<<10)
	}

	// The size is kept with the tenant, not recomputed from the node.
	if _, err := n.Evict(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	n.serve(t, id, "GET", "/api/health", "")
	if got := files() - base; got != 100<<10 {
		t.Fatalf("after reactivation: files at %d above the start, want %d", got, 100<<10)
	}
	if w := n.serve(t, id, "DELETE", "/api/collections/docs/records/"+rec.ID, ""); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if got := files(); got != base {
		t.Fatalf("after deleting the record: files %d, want %d", got, base)
	}
}

func TestUpdateTenant_IgnoresWhatIsNotActiveHereAndRefusesBadRecords(t *testing.T) {
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	ctx := context.Background()
	n.setup(t, "acme")
	rec, err := reg.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	other := rec
	other.ID = "other"
	stale := rec
	stale.Epoch++
	for _, tc := range []struct {
		name string
		rec  cluster.Tenant
	}{{"inactive tenant", other}, {"another epoch", stale}} {
		if changed, err := n.UpdateTenant(ctx, tc.rec); changed || err != nil {
			t.Errorf("%s: changed %v, %v; want false, nil", tc.name, changed, err)
		}
	}
	bad := func(f func(*cluster.Tenant)) cluster.Tenant { r := rec; f(&r); return r }
	for _, tc := range []struct {
		name string
		rec  cluster.Tenant
	}{
		{"malformed id", bad(func(r *cluster.Tenant) { r.ID = "../x" })},
		{"unknown durability", bad(func(r *cluster.Tenant) { r.Durability = "eventually" })},
		{"negative quota", bad(func(r *cluster.Tenant) { r.Quota.StorageBytes = -1 })},
	} {
		if changed, err := n.UpdateTenant(ctx, tc.rec); changed || err == nil {
			t.Errorf("%s: changed %v, %v; want an error", tc.name, changed, err)
		}
	}
}

func TestStoresData(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/api/collections/posts/records", true},
		{"PATCH", "/api/collections/posts/records/abc", true},
		{"PUT", "/api/collections/posts/records/abc", true},
		{"POST", "/api/batch", true},
		{"POST", "/api/collections", true},
		{"POST", "/api/backups", true},
		{"GET", "/api/collections/posts/records", false},
		{"HEAD", "/api/files/posts/abc/x.txt", false},
		{"DELETE", "/api/collections/posts/records/abc", false},
		{"POST", "/api/collections/users/auth-with-password", false},
		{"POST", "/api/collections/users/auth-with-oauth2", false},
		{"POST", "/api/collections/users/auth-refresh", false},
		{"POST", "/api/collections/users/request-otp", false},
		{"POST", "/api/collections/users/request-password-reset", false},
		{"POST", "/api/collections/users/confirm-password-reset", false},
		{"POST", "/api/collections/users/confirm-verification", false},
		{"POST", "/api/collections/_superusers/impersonate/abc", false},
		{"POST", "/api/realtime", false},
		{"PATCH", "/api/settings", false},
		{"POST", "/api/collections/auth-with-password", true}, // a collection's records route, not an auth route
		{"POST", "/api/collections/users/records-auth-with-password", true},
		{"POST", "/api/realtime/x", true},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if got := storesData(r); got != tc.want {
			t.Errorf("%s %s: got %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestQuota_RequestWindowRestartsWhenItEnds(t *testing.T) {
	var q quotaState
	q.apply(cluster.Tenant{Quota: cluster.TenantQuota{RequestsPerDay: 2}})
	const t0 = 1_000_000
	for i, tc := range []struct {
		at         int64
		used, rest int64
		ok         bool
	}{
		{t0, 1, t0 + requestWindowSeconds, true},
		{t0 + 10, 2, t0 + requestWindowSeconds, true},
		{t0 + 20, 2, t0 + requestWindowSeconds, false},
		{t0 + requestWindowSeconds - 1, 2, t0 + requestWindowSeconds, false},
		{t0 + requestWindowSeconds, 1, t0 + 2*requestWindowSeconds, true}, // a new window starts with this request
		{t0 + requestWindowSeconds + 5, 2, t0 + 2*requestWindowSeconds, true},
	} {
		used, reset, ok := q.countRequest(tc.at, 2)
		if used != tc.used || reset != tc.rest || ok != tc.ok {
			t.Errorf("request %d at +%ds: got used %d, reset %d, ok %v; want %d, %d, %v", i, tc.at-t0, used, reset, ok, tc.used, tc.rest, tc.ok)
		}
	}
}

// headerSink is a ResponseWriter that keeps only headers, so that the
// benchmark measures the check and not a response recorder.
type headerSink struct{ h http.Header }

func (s *headerSink) Header() http.Header         { return s.h }
func (s *headerSink) Write(b []byte) (int, error) { return len(b), nil }
func (s *headerSink) WriteHeader(int)             {}

// BenchmarkQuotaCheck measures the per-request check of a tenant with
// every limit set (suspension, request counter, storage) on a write, the
// path that runs all three. "parallel" runs it from every core at once on
// one tenant: the counter is shared, so this is its contended cost.
func BenchmarkQuotaCheck(b *testing.B) {
	var q quotaState
	q.apply(cluster.Tenant{Quota: cluster.TenantQuota{StorageBytes: 1 << 40, RequestsPerDay: math.MaxInt64}})
	r := httptest.NewRequest("POST", "/api/collections/posts/records", nil)
	b.Run("serial", func(b *testing.B) {
		w := &headerSink{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			if !q.admit(w, r, time.Now()) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &headerSink{h: http.Header{}}
			for pb.Next() {
				clear(w.h)
				if !q.admit(w, r, time.Now()) {
					b.Fatal("refused")
				}
			}
		})
	})
}
