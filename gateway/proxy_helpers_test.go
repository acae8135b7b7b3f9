package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

const testSecret = "test-cluster-secret"

// fakeCP is a control plane whose Route answers and watch stream the test
// controls. Route answers come from routes (tenant_not_found when absent)
// or errs; Watch hands each new stream to the test through streams.
type fakeCP struct {
	mu      sync.Mutex
	routes  map[string]cluster.Route
	errs    map[string]error
	calls   map[string]int
	gate    chan struct{} // when set, Route waits for it to be closed
	streams chan *fakeStream
}

func newFakeCP() *fakeCP {
	return &fakeCP{routes: map[string]cluster.Route{}, errs: map[string]error{}, calls: map[string]int{}, streams: make(chan *fakeStream, 4)}
}

func (c *fakeCP) setRoute(r cluster.Route) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.routes[r.Tenant] = r
}

func (c *fakeCP) setErr(id string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[id] = err
}

func (c *fakeCP) routeCalls(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

func (c *fakeCP) Route(ctx context.Context, id string) (cluster.Route, error) {
	c.mu.Lock()
	c.calls[id]++
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return cluster.Route{}, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.errs[id]; err != nil {
		return cluster.Route{}, err
	}
	r, ok := c.routes[id]
	if !ok {
		return cluster.Route{}, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)
	}
	return r, nil
}

// fakeStream is one connection of the watch stream.
type fakeStream struct {
	events  chan cluster.WatchEvent
	applied chan struct{}
	broken  chan error
}

func (c *fakeCP) Watch(ctx context.Context, fn func(cluster.WatchEvent)) error {
	s := &fakeStream{events: make(chan cluster.WatchEvent), applied: make(chan struct{}), broken: make(chan error, 1)}
	select {
	case c.streams <- s:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.broken:
			return err
		case ev := <-s.events:
			fn(ev)
			s.applied <- struct{}{}
		}
	}
}

// nextStream returns the next watch connection the proxy opens.
func (c *fakeCP) nextStream(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case s := <-c.streams:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not open a watch stream")
		return nil
	}
}

// send delivers ev and returns once the proxy has applied it.
func (s *fakeStream) send(t *testing.T, ev cluster.WatchEvent) {
	t.Helper()
	select {
	case s.events <- ev:
		<-s.applied
	case <-time.After(5 * time.Second):
		t.Fatalf("the proxy did not read watch event %q", ev.Type)
	}
}

// testNode is a tenant node played by a real HTTP server on loopback. Like
// the real node it refuses requests without the cluster secret.
type testNode struct {
	*httptest.Server
	addr string
	hits atomic.Int32
}

func newNode(t *testing.T, h http.HandlerFunc) *testNode {
	t.Helper()
	n := &testNode{}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		if r.Header.Get(cluster.HeaderSecret) != testSecret {
			cluster.WriteError(w, cluster.ErrUnauthorized)
			return
		}
		h(w, r)
	}))
	n.addr = strings.TrimPrefix(n.URL, "http://")
	t.Cleanup(n.Close)
	return n
}

// okNode answers 200 with body.
func okNode(t *testing.T, body string) *testNode {
	return newNode(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, body)
	})
}

// answerNodeError answers as a tenant node does for its own errors.
func answerNodeError(w http.ResponseWriter, kind *cluster.Error) {
	w.Header().Set(cluster.HeaderError, kind.Code)
	cluster.WriteError(w, kind)
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// newTestProxy returns a proxy over cp with a quiet logger, stopped at the
// end of the test; mutate adjusts its config.
func newTestProxy(t *testing.T, cp ControlPlane, mutate func(*ProxyConfig)) *Proxy {
	t.Helper()
	cfg := DefaultProxyConfig()
	cfg.ClusterSecret = testSecret
	cfg.HoldTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := NewProxy(cfg, cp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return p
}

// startFeed starts p and delivers a snapshot of routes.
func startFeed(t *testing.T, p *Proxy, cp *fakeCP, routes ...cluster.Route) *fakeStream {
	t.Helper()
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := cp.nextStream(t)
	s.send(t, cluster.WatchEvent{Type: "snapshot", Index: 1, Routes: routes})
	return s
}

// serveFront serves tenants through a real Gateway (domain example.com)
// in front of tenants.
func serveFront(t *testing.T, tenants Tenants) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Domain = "example.com"
	cfg.Logger = slog.New(slog.DiscardHandler)
	g, err := New(cfg, http.NotFoundHandler(), tenants)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv.URL
}

var testClient = &http.Client{Timeout: 20 * time.Second}

// call sends a request for tenant acme through front and returns the
// response with its body read.
func call(t *testing.T, front, method, path string, body io.Reader, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, front+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "acme.example.com"
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

// noInternalHeaders fails if h carries an X-Pbe-* header.
func noInternalHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k := range h {
		if strings.HasPrefix(k, InternalHeaderPrefix) {
			t.Errorf("response header %s reached the client", k)
		}
	}
}
