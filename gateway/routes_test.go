package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
)

func TestProxy_RouteCacheFollowsWatch(t *testing.T) {
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	s := startFeed(t, p, cp,
		cluster.Route{Tenant: "a", Node: "n1", Addr: "10.0.0.1:1", Epoch: 1},
		cluster.Route{Tenant: "b", Node: "n2", Addr: "10.0.0.2:1", Epoch: 1},
		cluster.Route{Tenant: "c", Node: "n2", Addr: "10.0.0.2:1", Epoch: 3},
	)
	want := func(t *testing.T, id, addr string, epoch uint64) {
		t.Helper()
		rt := p.routes.get(id)
		switch {
		case addr == "" && rt != nil:
			t.Errorf("route of %s: got %s, want none", id, rt.Addr)
		case addr == "":
		case rt == nil:
			t.Errorf("route of %s: got none, want %s", id, addr)
		case rt.Addr != addr || rt.Epoch != epoch:
			t.Errorf("route of %s: got %s@%d, want %s@%d", id, rt.Addr, rt.Epoch, addr, epoch)
		}
	}
	t.Run("snapshot", func(t *testing.T) {
		want(t, "a", "10.0.0.1:1", 1)
		want(t, "b", "10.0.0.2:1", 1)
		if err := p.Fresh(); err != nil {
			t.Errorf("Fresh after snapshot: got %v, want nil", err)
		}
	})
	t.Run("tenant moved", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "a", Route: &cluster.Route{Tenant: "a", Node: "n2", Addr: "10.0.0.2:1", Epoch: 2}})
		want(t, "a", "10.0.0.2:1", 2)
	})
	t.Run("tenant without route", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "b"})
		want(t, "b", "", 0)
	})
	t.Run("node changed address", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "node", Node: &cluster.Node{ID: "n2", Addr: "10.0.0.9:1", State: cluster.NodeActive}})
		want(t, "a", "10.0.0.9:1", 2)
		want(t, "c", "10.0.0.9:1", 3)
	})
	t.Run("ping changes nothing", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "ping"})
		want(t, "a", "10.0.0.9:1", 2)
	})
	t.Run("node down", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "node", Node: &cluster.Node{ID: "n2", Addr: "10.0.0.9:1", State: cluster.NodeDown}})
		want(t, "a", "", 0)
		want(t, "c", "", 0)
	})
	t.Run("snapshot replaces everything", func(t *testing.T) {
		s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "a", Route: &cluster.Route{Tenant: "a", Node: "n1", Addr: "10.0.0.1:1", Epoch: 4}})
		s.send(t, cluster.WatchEvent{Type: "snapshot", Index: 9, Routes: []cluster.Route{{Tenant: "d", Node: "n1", Addr: "10.0.0.1:1", Epoch: 1}}})
		want(t, "a", "", 0)
		want(t, "d", "10.0.0.1:1", 1)
		if got := p.routes.size(); got != 1 {
			t.Errorf("cached routes: got %d, want 1", got)
		}
	})
}

func TestProxy_CachedRouteMakesNoRouteCall(t *testing.T) {
	n1, n2 := okNode(t, "from n1"), okNode(t, "from n2")
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	s := startFeed(t, p, cp, cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	front := serveFront(t, p)
	for range 5 {
		if resp, body := call(t, front, http.MethodGet, "/api/health", nil, nil); resp.StatusCode != 200 || body != "from n1" {
			t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "from n1")
		}
	}
	s.send(t, cluster.WatchEvent{Type: "tenant", Tenant: "acme", Route: &cluster.Route{Tenant: "acme", Node: "n2", Addr: n2.addr, Epoch: 2}})
	if resp, body := call(t, front, http.MethodGet, "/api/health", nil, nil); resp.StatusCode != 200 || body != "from n2" {
		t.Fatalf("after the move: got %d %q, want 200 %q", resp.StatusCode, body, "from n2")
	}
	if got := cp.routeCalls("acme"); got != 0 {
		t.Errorf("Route calls for a cached tenant: got %d, want 0", got)
	}
}

// gatedTenants counts requests that reached the proxy.
type gatedTenants struct {
	*Proxy
	arrived chan struct{}
}

func (g gatedTenants) ServeTenant(w http.ResponseWriter, r *http.Request, id string) {
	g.arrived <- struct{}{}
	g.Proxy.ServeTenant(w, r, id)
}

func TestProxy_ConcurrentMissesShareOneRouteCall(t *testing.T) {
	const clients = 10
	n1 := okNode(t, "ok")
	cp := newFakeCP()
	cp.setRoute(cluster.Route{Tenant: "acme", Node: "n1", Addr: n1.addr, Epoch: 1})
	cp.gate = make(chan struct{})
	p := newTestProxy(t, cp, nil)
	gt := gatedTenants{p, make(chan struct{}, clients)}
	front := serveFront(t, gt)
	errs := make(chan error, clients)
	for range clients {
		go func() {
			req, err := http.NewRequest(http.MethodGet, front+"/api/health", nil)
			if err != nil {
				errs <- err
				return
			}
			req.Host = "acme.example.com"
			resp, err := testClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			errs <- err
		}()
	}
	for range clients {
		<-gt.arrived // every request is in the proxy while Route is blocked
	}
	eventually(t, "the first miss calls Route", func() bool { return cp.routeCalls("acme") >= 1 })
	close(cp.gate)
	for range clients {
		if err := <-errs; err != nil {
			t.Errorf("request: %v", err)
		}
	}
	if got := cp.routeCalls("acme"); got != 1 {
		t.Errorf("Route calls: got %d, want 1", got)
	}
}

func TestProxy_WatchReconnects(t *testing.T) {
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	if err := p.Fresh(); !errors.Is(err, ErrRouteFeedStale) {
		t.Fatalf("Fresh before Start: got %v, want ErrRouteFeedStale", err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s1 := cp.nextStream(t)
	if err := p.Fresh(); err == nil {
		t.Fatal("Fresh before the first snapshot: got nil, want an error")
	}
	s1.send(t, cluster.WatchEvent{Type: "snapshot", Routes: []cluster.Route{{Tenant: "a", Node: "n1", Addr: "10.0.0.1:1", Epoch: 1}}})
	if err := p.Fresh(); err != nil {
		t.Fatalf("Fresh after the snapshot: got %v, want nil", err)
	}
	s1.broken <- io.ErrUnexpectedEOF
	eventually(t, "Fresh reports the broken stream", func() bool { return errors.Is(p.Fresh(), ErrRouteFeedStale) })
	if rt := p.routes.get("a"); rt == nil {
		t.Error("routes were dropped while disconnected; want them kept until the next snapshot")
	}
	s2 := cp.nextStream(t)
	if err := p.Fresh(); err == nil {
		t.Fatal("Fresh after reconnecting, before a snapshot: got nil, want an error")
	}
	s2.send(t, cluster.WatchEvent{Type: "snapshot", Routes: []cluster.Route{{Tenant: "b", Node: "n1", Addr: "10.0.0.1:1", Epoch: 1}}})
	if err := p.Fresh(); err != nil {
		t.Fatalf("Fresh after the new snapshot: got %v, want nil", err)
	}
	if p.routes.get("a") != nil || p.routes.get("b") == nil {
		t.Error("the new snapshot did not replace the cache")
	}
}

func TestProxy_Stop(t *testing.T) {
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	ctx := context.Background()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: got %v, want nil", err)
	}
	q := newTestProxy(t, cp, nil)
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err == nil {
		t.Error("second Start: got nil, want an error")
	}
	cp.nextStream(t)
	for i := range 2 {
		if err := q.Stop(ctx); err != nil {
			t.Errorf("Stop #%d: got %v, want nil", i+1, err)
		}
	}
	if err := q.Start(ctx); err == nil {
		t.Error("Start after Stop: got nil, want an error")
	}
	if err := q.Fresh(); !errors.Is(err, ErrRouteFeedStale) {
		t.Errorf("Fresh after Stop: got %v, want ErrRouteFeedStale", err)
	}
}

func TestProxy_SilentFeedReconnects(t *testing.T) {
	cp := newFakeCP()
	p := newTestProxy(t, cp, nil)
	p.idleAfter = 100 * time.Millisecond // the control plane pings more often than this
	startFeed(t, p, cp)
	if err := p.Fresh(); err != nil {
		t.Fatalf("Fresh after the snapshot: got %v, want nil", err)
	}
	cp.nextStream(t) // the silent stream was dropped and a new one opened
	if err := p.Fresh(); !errors.Is(err, ErrRouteFeedStale) || !strings.Contains(err.Error(), "silent") {
		t.Errorf("Fresh after a silent stream: got %v, want ErrRouteFeedStale naming the silence", err)
	}
}
