package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

func TestProxyConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*ProxyConfig)
		field  string // "" = valid
	}{
		{"defaults with secret", func(*ProxyConfig) {}, ""},
		{"no secret", func(c *ProxyConfig) { c.ClusterSecret = "" }, "ClusterSecret"},
		{"zero hold", func(c *ProxyConfig) { c.HoldTimeout = 0 }, "HoldTimeout"},
		{"negative replay limit", func(c *ProxyConfig) { c.MaxReplayBody = -1 }, "MaxReplayBody"},
		{"zero replay limit", func(c *ProxyConfig) { c.MaxReplayBody = 0 }, ""},
		{"no logger", func(c *ProxyConfig) { c.Logger = nil }, "Logger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultProxyConfig()
			cfg.ClusterSecret = "s"
			tc.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Errorf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// wantJSONError checks a platform JSON error answer.
func wantJSONError(t *testing.T, resp *http.Response, body string, status int, code string) {
	t.Helper()
	var e cluster.ErrorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body %q is not a JSON error: %v", body, err)
	}
	if resp.StatusCode != status || e.Code != code {
		t.Errorf("got %d %q, want %d %q (body %s)", resp.StatusCode, e.Code, status, code, body)
	}
	if status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	noInternalHeaders(t, resp.Header)
}

func TestProxy_NotOwnerReresolves(t *testing.T) {
	cp := newFakeCP()
	n2 := okNode(t, "from n2")
	n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2}) // the tenant moved
		answerNodeError(w, cluster.ErrNotOwner)
	})
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	p := newTestProxy(t, cp, nil)
	front := serveFront(t, p)
	resp, body := call(t, front, http.MethodGet, "/api/collections/posts/records", nil, nil)
	if resp.StatusCode != http.StatusOK || body != "from n2" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "from n2")
	}
	noInternalHeaders(t, resp.Header)
	if got := n1.hits.Load(); got != 1 {
		t.Errorf("requests to the old node: got %d, want 1", got)
	}
	if got := cp.routeCalls("acme"); got != 2 {
		t.Errorf("Route calls: got %d, want 2 (miss, then re-resolve)", got)
	}
}

func TestProxy_UnreachableNodeIsHeldUntilRouteChanges(t *testing.T) {
	dead := deadAddr(t)
	n2 := okNode(t, "from n2")
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: dead, Epoch: 1})
	p := newTestProxy(t, cp, nil)
	s := startFeed(t, p, cp) // no routes yet: the first request misses
	front := serveFront(t, p)
	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		resp, body := call(t, front, http.MethodGet, "/api/health", nil, nil)
		done <- answer{resp.StatusCode, body}
	}()
	eventually(t, "the held request re-resolves", func() bool { return cp.routeCalls("acme") >= 2 })
	// The control plane fails the tenant over; only the watch stream says so.
	s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "acme", Route: &cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2}})
	select {
	case a := <-done:
		if a.status != http.StatusOK || a.body != "from n2" {
			t.Errorf("got %d %q, want 200 %q", a.status, a.body, "from n2")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request was not served after the failover")
	}
}

func TestProxy_HoldTimeoutAnswers503(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind *cluster.Error // the node's answer; nil: the node is unreachable
	}{
		{"tenant_moving", cluster.ErrTenantMoving},
		{"no_lease", cluster.ErrNoLease},
		{"unavailable", cluster.ErrUnavailable},
		{"shutting_down", cluster.ErrShuttingDown},
		{"not_owner", cluster.ErrNotOwner},
		{"unreachable", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := deadAddr(t)
			var node *testNode
			if tc.kind != nil {
				node = newNode(t, func(w http.ResponseWriter, r *http.Request) { answerNodeError(w, tc.kind) })
				addr = node.addr
			}
			cp := newFakeCP()
			cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: addr, Epoch: 1})
			p := newTestProxy(t, cp, func(c *ProxyConfig) { c.HoldTimeout = 200 * time.Millisecond })
			resp, body := call(t, serveFront(t, p), http.MethodGet, "/api/health", nil, nil)
			wantJSONError(t, resp, body, http.StatusServiceUnavailable, cluster.ErrUnavailable.Code)
			if !strings.Contains(body, "moving or failing over") {
				t.Errorf("body %s: want it to say the tenant is moving or failing over", body)
			}
			if node != nil && node.hits.Load() < 2 {
				t.Errorf("node attempts: got %d, want at least 2", node.hits.Load())
			}
		})
	}
}

func TestProxy_ReplaysBodyOnRetry(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, tc := range []struct {
		name    string
		chunked bool
	}{{"content-length", false}, {"chunked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cp := newFakeCP()
			n2 := newNode(t, echoBody)
			firstBody := make(chan []byte, 1)
			n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				firstBody <- b
				cp.setRoute(cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2})
				answerNodeError(w, cluster.ErrNotOwner)
			})
			cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
			p := newTestProxy(t, cp, nil)
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			resp, got := call(t, serveFront(t, p), http.MethodPost, "/api/collections/posts/records", body, nil)
			if resp.StatusCode != http.StatusOK || got != string(payload) {
				t.Fatalf("got %d with %d bytes, want 200 echoing %d bytes", resp.StatusCode, len(got), len(payload))
			}
			if first := <-firstBody; !bytes.Equal(first, payload) {
				t.Errorf("first attempt's body: got %d bytes, want the %d sent", len(first), len(payload))
			}
		})
	}
}

func TestProxy_LargeBody(t *testing.T) {
	payload := strings.Repeat("x", 1024)
	t.Run("sent once, not retried", func(t *testing.T) {
		cp := newFakeCP()
		n2 := okNode(t, "from n2")
		n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			cp.setRoute(cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2})
			answerNodeError(w, cluster.ErrNotOwner)
		})
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.MaxReplayBody = 16 })
		resp, body := call(t, serveFront(t, p), http.MethodPost, "/api/files", strings.NewReader(payload), nil)
		wantJSONError(t, resp, body, http.StatusServiceUnavailable, cluster.ErrUnavailable.Code)
		if n1.hits.Load() != 1 || n2.hits.Load() != 0 {
			t.Errorf("attempts: got n1=%d n2=%d, want n1=1 n2=0", n1.hits.Load(), n2.hits.Load())
		}
	})
	t.Run("retried when never sent", func(t *testing.T) {
		cp := newFakeCP()
		n2 := newNode(t, echoBody)
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: deadAddr(t), Epoch: 1})
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.MaxReplayBody = 16 })
		front := serveFront(t, p)
		done := make(chan string, 1)
		go func() {
			resp, body := call(t, front, http.MethodPost, "/api/files", strings.NewReader(payload), nil)
			done <- resp.Status + " " + body
		}()
		eventually(t, "the held request re-resolves", func() bool { return cp.routeCalls("acme") >= 2 })
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2})
		if got, want := <-done, "200 OK "+payload; got != want {
			t.Errorf("got %.40q..., want %.40q...", got, want)
		}
	})
}

func TestProxy_TenantNotFound(t *testing.T) {
	t.Run("node answer", func(t *testing.T) {
		n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) { answerNodeError(w, cluster.ErrTenantNotFound) })
		cp := newFakeCP()
		p := newTestProxy(t, cp, nil)
		startFeed(t, p, cp, cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
		resp, body := call(t, serveFront(t, p), http.MethodGet, "/api/health", nil, nil)
		wantJSONError(t, resp, body, http.StatusNotFound, cluster.ErrTenantNotFound.Code)
		if p.routes.get("acme") != nil {
			t.Error("the route is still cached; want it dropped")
		}
	})
	t.Run("control plane answer", func(t *testing.T) {
		p := newTestProxy(t, newFakeCP(), nil)
		resp, body := call(t, serveFront(t, p), http.MethodGet, "/api/health", nil, nil)
		wantJSONError(t, resp, body, http.StatusNotFound, cluster.ErrTenantNotFound.Code)
	})
}

func TestProxy_TenantOwn503PassesThrough(t *testing.T) {
	const own = `{"status":503,"message":"tenant's own maintenance page"}`
	n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tenant-Thing", "kept")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, own)
	})
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	p := newTestProxy(t, cp, nil)
	resp, body := call(t, serveFront(t, p), http.MethodGet, "/api/health", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || body != own || resp.Header.Get("X-Tenant-Thing") != "kept" {
		t.Errorf("got %d %q (X-Tenant-Thing %q), want the tenant's own 503 untouched", resp.StatusCode, body, resp.Header.Get("X-Tenant-Thing"))
	}
	if got := n1.hits.Load(); got != 1 {
		t.Errorf("node attempts: got %d, want 1", got)
	}
}

func TestProxy_SSEStreamsBeforeResponseEnds(t *testing.T) {
	release := make(chan struct{})
	n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "id:1\nevent:PB_CONNECT\ndata:{\"clientId\":\"1\"}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	p := newTestProxy(t, cp, nil)
	req, _ := http.NewRequest(http.MethodGet, serveFront(t, p)+"/api/realtime", nil)
	req.Host = "acme.example.com"
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n') // before the node ends the response
	close(release)
	if err != nil || line != "id:1\n" {
		t.Fatalf("first line: got %q, %v; want %q", line, err, "id:1\n")
	}
}

func TestProxy_InternalHeaders(t *testing.T) {
	seen := make(chan *http.Request, 1)
	n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Clone(r.Context())
		w.Header().Set("X-Pbe-Node", "n1")
		w.Header().Set(cluster.HeaderError, "some_other_code") // not a hold: passes, header stripped
		_, _ = io.WriteString(w, "ok")
	})
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 7})
	p := newTestProxy(t, cp, nil)
	// No Gateway in front: the proxy itself must not trust client X-Pbe-*.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.ServeTenant(w, r, "acme") }))
	t.Cleanup(front.Close)
	hdr := http.Header{"X-Pbe-Secret": {"forged"}, "X-Pbe-Epoch": {"99"}, "X-Pbe-Other": {"x"}, "Authorization": {"Bearer user-token"}}
	resp, body := call(t, front.URL, http.MethodGet, "/api/health", nil, hdr)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
	noInternalHeaders(t, resp.Header)
	in := <-seen
	got := in.Header
	for k, want := range map[string]string{
		cluster.HeaderSecret: testSecret, cluster.HeaderTenant: "acme", cluster.HeaderEpoch: "7",
		"X-Pbe-Other": "", "Authorization": "Bearer user-token", "X-Forwarded-Host": "acme.example.com",
	} {
		if g := got.Get(k); g != want {
			t.Errorf("node saw %s %q, want %q", k, g, want)
		}
	}
	if got.Get("X-Forwarded-For") == "" {
		t.Error("node saw no X-Forwarded-For")
	}
	if in.Host != "acme.example.com" {
		t.Errorf("node saw Host %q, want the client's acme.example.com", in.Host)
	}
}

func TestProxy_BreakerCountsTransportFailuresOnly(t *testing.T) {
	t.Run("unreachable node opens it", func(t *testing.T) {
		dead := deadAddr(t)
		cp := newFakeCP()
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: dead, Epoch: 1})
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.HoldTimeout = 300 * time.Millisecond })
		front := serveFront(t, p)
		for i := 0; i < 10 && p.breakers.get(dead).State().String() != "open"; i++ {
			resp, body := call(t, front, http.MethodGet, "/api/health", nil, nil)
			wantJSONError(t, resp, body, http.StatusServiceUnavailable, cluster.ErrUnavailable.Code)
		}
		if st := p.breakers.get(dead).State().String(); st != "open" {
			t.Errorf("breaker of the dead node: got %s, want open", st)
		}
	})
	t.Run("node 503s do not", func(t *testing.T) {
		n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) { answerNodeError(w, cluster.ErrTenantMoving) })
		cp := newFakeCP()
		cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
		p := newTestProxy(t, cp, func(c *ProxyConfig) { c.HoldTimeout = 100 * time.Millisecond })
		front := serveFront(t, p)
		for n1.hits.Load() <= breakerTrip {
			call(t, front, http.MethodGet, "/api/health", nil, nil)
		}
		if st := p.breakers.get(n1.addr).State().String(); st != "closed" {
			t.Errorf("breaker of a node answering 503: got %s, want closed", st)
		}
	})
}

// echoBody answers 200 with the request body. (A Go HTTP/1 server cannot
// read the body once the response has started: read it all first.)
func echoBody(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	_, _ = w.Write(b)
}

func TestProxy_StreamedBodyOverGatewayLimit(t *testing.T) {
	n1 := newNode(t, echoBody)
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	p := newTestProxy(t, cp, func(c *ProxyConfig) { c.MaxReplayBody = 16 })
	cfg := DefaultConfig()
	cfg.Domain = "example.com"
	cfg.MaxBodyBytes = 1024
	cfg.Logger = slog.New(slog.DiscardHandler)
	g, err := New(cfg, http.NotFoundHandler(), p)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	chunked := io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))) // no Content-Length: caught mid-stream
	resp, body := call(t, front.URL, http.MethodPost, "/api/files", chunked, nil)
	wantJSONError(t, resp, body, http.StatusRequestEntityTooLarge, "body_too_large")
	if c := p.breakers.get(n1.addr).Counts(); c.TotalFailures != 0 {
		t.Errorf("breaker failures of the node: got %d, want 0 (the client's body is not the node's fault)", c.TotalFailures)
	}
}

// returnedTenants reports when the proxy's ServeTenant has returned.
type returnedTenants struct {
	*Proxy
	returned chan struct{}
}

func (g returnedTenants) ServeTenant(w http.ResponseWriter, r *http.Request, id string) {
	defer close(g.returned)
	g.Proxy.ServeTenant(w, r, id)
}

func TestProxy_ClientGoneStopsRetrying(t *testing.T) {
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: deadAddr(t), Epoch: 1})
	p := newTestProxy(t, cp, func(c *ProxyConfig) { c.HoldTimeout = time.Minute })
	rt := returnedTenants{p, make(chan struct{})}
	front := serveFront(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front+"/api/health", nil)
	req.Host = "acme.example.com"
	go func() {
		if resp, err := testClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, "the request is held", func() bool { return cp.routeCalls("acme") >= 2 })
	cancel()
	select {
	case <-rt.returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy kept holding a request whose client went away")
	}
}

// A node that stops answering mid-request (paused past its lease) must not
// hold the request forever: when the route moves, the attempt is abandoned
// and the request is retried, body included, at the new owner.
func TestProxy_RouteChangeAbandonsAttemptsAtTheOldOwner(t *testing.T) {
	hung := make(chan struct{})
	defer close(hung)
	n1 := newNode(t, func(w http.ResponseWriter, r *http.Request) { <-hung })
	n2 := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "n2 got %s", b)
	})
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	s := startFeed(t, p, cp, cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	front := serveFront(t, p)
	done := make(chan string, 1)
	go func() {
		resp, body := call(t, front, http.MethodPost, "/api/collections/posts/records", strings.NewReader("payload"), nil)
		done <- fmt.Sprint(resp.StatusCode, " ", body)
	}()
	eventually(t, "the attempt to reach n1", func() bool { return len(p.flights.tenants()) == 1 })
	s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "acme", Route: &cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2}})
	select {
	case got := <-done:
		if got != "200 n2 got payload" {
			t.Fatalf("got %q, want the new owner's answer to the replayed body", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request stayed with the old owner")
	}
}
