package tenantnode

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pbe/pbe/storage"
)

func TestManager_EvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, func(c *Config) { c.MaxTenants = 2 })
	for _, id := range []string{"alpha", "bravo", "charlie"} {
		n.setup(t, id)
		n.post(t, id, id+"-1")
	}
	// alpha was used least recently when charlie activated.
	waitFor(t, "eviction of alpha", func() bool { return !n.IsActive("alpha") })
	if got := n.Active(); got != 2 {
		t.Fatalf("active tenants: got %d, want 2", got)
	}
	if !n.IsActive("bravo") || !n.IsActive("charlie") {
		t.Fatal("the two most recently used tenants should stay active")
	}
	t.Run("evicted tenant re-activates transparently with its data", func(t *testing.T) {
		if got := n.count(t, "alpha"); got != 1 {
			t.Fatalf("alpha posts: got %d, want 1", got)
		}
		if !n.IsActive("alpha") {
			t.Fatal("alpha not active after a request")
		}
		st := n.Stats()
		if st.Activations < 4 || st.Evictions < 1 {
			t.Fatalf("stats: got %+v", st)
		}
	})
}

// A request that waited on an activation used to return before the
// activation was counted, so Stats read right after it could be one short.
func TestManager_ActivationIsCountedBeforeItsRequestReturns(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, nil)
	n.reg.create(t, "alpha")
	if w := n.serve(t, "alpha", "GET", "/api/health", ""); w.Code != http.StatusOK {
		t.Fatalf("health: got %d, want 200: %s", w.Code, w.Body)
	}
	if got := n.Stats().Activations; got != 1 {
		t.Fatalf("activations right after the first request: got %d, want 1", got)
	}
}

func TestManager_EvictsIdleTenants(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	n.setup(t, "alpha")
	n.post(t, "alpha", "one")
	waitFor(t, "idle eviction", func() bool { return n.Active() == 0 })
	if got := n.count(t, "alpha"); got != 1 {
		t.Fatalf("after idle eviction: got %d posts, want 1", got)
	}
}

func TestManager_ConcurrentFirstRequestsShareOneActivation(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	gate := &gatedCP{ControlPlane: reg, id: "alpha", release: make(chan struct{})}
	n := newNode(t, gate, nil, nil)
	n.reg = reg
	reg.create(t, "alpha")

	const clients = 20
	var wg sync.WaitGroup
	codes := make([]int, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = n.serve(t, "alpha", "GET", "/api/health", "").Code
		}()
	}
	waitFor(t, "requests to queue on the activation", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		e, ok := n.active.Peek("alpha")
		return ok && e.refs == clients
	})
	close(gate.release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: got %d", i, c)
		}
	}
	if got := gate.calls.Load(); got != 1 {
		t.Fatalf("control-plane lookups: got %d, want 1 (one shared activation)", got)
	}
	if got := n.Stats().Activations; got != 1 {
		t.Fatalf("activations: got %d, want 1", got)
	}
}

func TestManager_ActivationDoesNotBlockOtherTenants(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	gate := &gatedCP{ControlPlane: reg, id: "slow", release: make(chan struct{})}
	n := newNode(t, gate, nil, nil)
	n.reg = reg
	reg.create(t, "slow")
	n.setup(t, "fast")

	slowDone := make(chan int)
	go func() { slowDone <- n.serve(t, "slow", "GET", "/api/health", "").Code }()
	waitFor(t, "slow activation to start", func() bool { return gate.calls.Load() >= 2 })

	// While slow is stuck activating, fast is served, and a third tenant
	// activates from scratch.
	n.post(t, "fast", "while slow activates")
	n.setup(t, "third")
	select {
	case <-slowDone:
		t.Fatal("slow finished before it was released")
	default:
	}
	close(gate.release)
	if code := <-slowDone; code != http.StatusOK {
		t.Fatalf("slow: got %d", code)
	}
}

func TestManager_UnknownTenantIs404(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, nil)
	w := n.serve(t, "nosuch", "GET", "/api/health", "")
	if w.Code != http.StatusNotFound {
		t.Fatalf("got %d, want 404: %s", w.Code, w.Body)
	}
	if n.Active() != 0 {
		t.Fatal("a failed activation left an active entry")
	}
	if _, err := os.Stat(filepath.Join(n.dir, "tenants", "nosuch")); !os.IsNotExist(err) {
		t.Fatal("an unknown tenant created local files")
	}
}

func TestManager_RealtimeClientsAreDisconnectedOnEviction(t *testing.T) {
	t.Parallel()
	n := newNode(t, newRegistry(t), nil, func(c *Config) { c.MaxTenants = 1 })
	n.setup(t, "alpha")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		req := httptest.NewRequest("GET", "/api/realtime", nil).WithContext(ctx)
		n.ServeTenant(httptest.NewRecorder(), req, "alpha")
	}()
	waitFor(t, "realtime client", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		e, ok := n.active.Peek("alpha")
		return ok && e.streams == 1
	})
	n.setup(t, "bravo") // over capacity: alpha (only a stream in flight) is evicted
	select {
	case <-streamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("realtime stream not ended by eviction")
	}
	waitFor(t, "alpha evicted", func() bool { return !n.IsActive("alpha") })
}

// failingStore is an object store that is down.
type failingStore struct{ storage.ObjectStore }

var errStoreDown = errors.New("object store down")

func (failingStore) Get(context.Context, string) ([]byte, error) { return nil, errStoreDown }

func TestManager_RefusesToOpenEmptyWhenReplicaIsMissing(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	n := newNode(t, reg, nil, nil)
	n.setup(t, "alpha")
	n.post(t, "alpha", "precious")
	if err := n.Remove(context.Background(), "alpha"); err != nil {
		t.Fatal(err)
	}
	// The replica vanishes but the tenant's metadata says it has data.
	prefix, _ := storage.TenantPrefix("alpha")
	if err := n.objects.DeletePrefix(context.Background(), prefix+"litestream/"); err != nil {
		t.Fatal(err)
	}
	w := n.serve(t, "alpha", "GET", "/api/health", "")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d %s, want 503 with Retry-After", w.Code, w.Body)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "tenants", "alpha", "pb_data", "data.db")); !os.IsNotExist(err) {
		t.Fatal("an empty database was created")
	}
}

func TestManager_ObjectStoreDownFailsColdActivationClearly(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	healthy := newNode(t, reg, nil, nil)
	down := newNode(t, reg, failingStore{healthy.objects}, nil)
	reg.create(t, "alpha")
	w := down.serve(t, "alpha", "GET", "/api/health", "")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d %s, want 503", w.Code, w.Body)
	}
}

// TestManager_EvictionReleasesResources activates and evicts a tenant
// repeatedly: goroutines and open files must return to where they were,
// or every activation would leak (PocketBase's logger, Litestream's
// monitors, SQLite handles).
func TestManager_EvictionReleasesResources(t *testing.T) {
	n := newNode(t, newRegistry(t), nil, nil)
	n.setup(t, "alpha")
	cycle := func() {
		n.post(t, "alpha", "x")
		if ok, _ := n.Evict(context.Background(), "alpha"); !ok {
			t.Fatal("alpha was not active")
		}
	}
	cycle() // warm up process-wide pools
	settle := func() (int, int) {
		time.Sleep(200 * time.Millisecond)
		fds, _ := os.ReadDir("/proc/self/fd")
		return runtime.NumGoroutine(), len(fds)
	}
	g0, f0 := settle()
	for range 5 {
		cycle()
	}
	g1, f1 := settle()
	if g1 > g0+3 {
		t.Errorf("goroutines: %d before, %d after 5 activate/evict cycles", g0, g1)
	}
	if f1 > f0+3 {
		t.Errorf("open files: %d before, %d after 5 activate/evict cycles", f0, f1)
	}
}
