package tenantnode

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pbe/pbe/cluster"
)

// requestWindowSeconds is the length of a request-quota window. The window
// is fixed: it starts with the first request counted after the previous
// one ended and lasts this long, whatever the traffic inside it.
const requestWindowSeconds = int64(24 * time.Hour / time.Second)

// Response headers of a tenant with a request quota.
const (
	headerRateLimit     = "X-RateLimit-Limit"
	headerRateRemaining = "X-RateLimit-Remaining"
	headerRateReset     = "X-RateLimit-Reset"
)

// quotaState is one active tenant's suspension and quotas, and what it has
// used of them. admit reads it on every request without a lock and without
// I/O; UpdateTenant and the usage loop (quota_usage.go) write it.
type quotaState struct {
	blocked      atomic.Bool
	requestLimit atomic.Int64 // requests per window; 0: unlimited
	storageLimit atomic.Int64 // bytes; 0: unlimited
	// window is the current request window; it is replaced, never reset in
	// place, so a request counts in exactly one window.
	window atomic.Pointer[requestWindow]
	// dbBytes is the used size of data.db and auxiliary.db, as of the last
	// measure (at most storageRefreshInterval old while requests arrive);
	// fileBytes is the uploaded files' size, kept current by record hooks.
	dbBytes   atomic.Int64
	fileBytes atomic.Int64
	// served is set by requests while a storage quota applies; the usage
	// loop measures the databases again only after it was set.
	served atomic.Bool
	// refusedRequests and refusedWrites count the requests refused for
	// the request quota (429) and the storage quota (507).
	refusedRequests atomic.Uint64
	refusedWrites   atomic.Uint64

	usage // persistence and measurement, quota_usage.go
}

// requestWindow counts the requests of one window.
type requestWindow struct {
	start int64 // unix seconds
	count atomic.Int64
}

// apply takes the suspension and quotas of t, the tenant's current record.
func (q *quotaState) apply(t cluster.Tenant) {
	q.blocked.Store(t.Blocked())
	q.requestLimit.Store(max(t.Quota.RequestsPerDay, 0))
	q.storageLimit.Store(max(t.Quota.StorageBytes, 0))
}

// admit decides whether r may reach the tenant's PocketBase and counts it
// against the request quota. When r may not, admit has written the answer
// (403 suspended, 429 over the request quota, 507 a write over the storage
// quota) and returns false. It is safe for concurrent use, takes no lock
// and does no I/O.
func (q *quotaState) admit(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	sec := now.Unix()
	limit := q.requestLimit.Load()
	if q.blocked.Load() {
		if limit > 0 {
			used, reset := q.peekRequests(sec)
			setRateHeaders(w.Header(), limit, used, reset)
		}
		cluster.WriteError(w, cluster.Errorf(cluster.ErrTenantSuspended,
			"this app is suspended; its owner or the platform operator can lift the suspension"))
		return false
	}
	if limit > 0 {
		used, reset, ok := q.countRequest(sec, limit)
		setRateHeaders(w.Header(), limit, used, reset)
		if !ok {
			err := cluster.Errorf(cluster.ErrRequestQuota,
				"this app has used its %d requests of the day; the count restarts at %s",
				limit, time.Unix(reset, 0).UTC().Format(time.RFC3339))
			err.Data = map[string]any{"limit": limit, "used": used, "reset": reset}
			cluster.WriteError(retryAfterWriter{w, strconv.FormatInt(max(reset-sec, 1), 10)}, err)
			q.refusedRequests.Add(1)
			return false
		}
	}
	if limit := q.storageLimit.Load(); limit > 0 {
		if !q.served.Load() {
			q.served.Store(true)
		}
		if used := q.dbBytes.Load() + q.fileBytes.Load(); used >= limit && storesData(r) {
			err := cluster.Errorf(cluster.ErrStorageQuota,
				"this app uses %d of its %d bytes of storage; delete data or ask for more storage", used, limit)
			err.Data = map[string]any{"limit": limit, "used": used}
			cluster.WriteError(w, err)
			q.refusedWrites.Add(1)
			return false
		}
	}
	return true
}

// countRequest counts one request in the window that holds sec, starting
// a new window if the current one has ended. A request over limit is not
// counted: it returns ok false with used equal to the count. reset is
// when the window ends (unix seconds).
func (q *quotaState) countRequest(sec, limit int64) (used, reset int64, ok bool) {
	for {
		w := q.window.Load()
		if w == nil || sec >= w.start+requestWindowSeconds {
			next := &requestWindow{start: sec}
			if !q.window.CompareAndSwap(w, next) {
				continue // another request started the window
			}
			w = next
		}
		n := w.count.Load()
		if n >= limit {
			return n, w.start + requestWindowSeconds, false
		}
		if w.count.CompareAndSwap(n, n+1) {
			return n + 1, w.start + requestWindowSeconds, true
		}
	}
}

// peekRequests returns what countRequest would see, without counting.
func (q *quotaState) peekRequests(sec int64) (used, reset int64) {
	w := q.window.Load()
	if w == nil || sec >= w.start+requestWindowSeconds {
		return 0, sec + requestWindowSeconds
	}
	return w.count.Load(), w.start + requestWindowSeconds
}

func setRateHeaders(h http.Header, limit, used, reset int64) {
	h.Set(headerRateLimit, strconv.FormatInt(limit, 10))
	h.Set(headerRateRemaining, strconv.FormatInt(max(limit-used, 0), 10))
	h.Set(headerRateReset, strconv.FormatInt(reset, 10))
}

// retryAfterWriter sets its own Retry-After as the status is written:
// cluster.WriteError sets a fixed one on every 429, and a client over its
// daily quota must be told when the window ends instead.
type retryAfterWriter struct {
	http.ResponseWriter
	seconds string
}

func (w retryAfterWriter) WriteHeader(code int) {
	w.Header().Set("Retry-After", w.seconds)
	w.ResponseWriter.WriteHeader(code)
}

// storesData reports whether r is a write that is refused while the
// tenant is at its storage quota. Reads and DELETEs are not: deleting data
// is how a tenant gets back under its quota. Nor are the writes that store
// nothing worth counting and that a tenant over quota still needs:
//   - sign-in and account flows on auth collections (auth-with-*,
//     auth-refresh, request-*, confirm-*, impersonate): users keep
//     signing in;
//   - POST /api/realtime, which changes a realtime connection's
//     subscriptions in memory;
//   - /api/settings, one fixed-size record, which is where an admin lowers
//     log retention (the logs live in auxiliary.db, which counts).
func storesData(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return false
	}
	p := r.URL.Path
	if p == "/api/realtime" || p == "/api/settings" || strings.HasPrefix(p, "/api/settings/") {
		return false
	}
	if rest, ok := strings.CutPrefix(p, "/api/collections/"); ok {
		if _, action, ok := strings.Cut(rest, "/"); ok && isAuthAction(action) {
			return false
		}
	}
	return true
}

// isAuthAction reports whether action (the path after
// /api/collections/{collection}/) is one of PocketBase's auth routes.
func isAuthAction(action string) bool {
	for _, prefix := range []string{"auth-", "request-", "confirm-", "impersonate/"} {
		if strings.HasPrefix(action, prefix) {
			return true
		}
	}
	return false
}
