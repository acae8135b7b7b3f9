package controlplane

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// ForwardedHeader marks a request a follower forwarded to the leader. A
// node that receives one and does not lead answers 503 instead of
// forwarding it again, so a stale view of the leader never makes a loop.
const ForwardedHeader = "X-Pbe-Forwarded-By"

// LeaderHeader is set on every answer the leader gives (directly, or
// through a follower that forwarded the request) to the host:port of its
// platform API, so that clients can send their next calls straight to it.
const LeaderHeader = "X-Pbe-Leader"

// ForwardTimeout bounds a forwarded request's wait for the leader's answer
// headers.
const ForwardTimeout = 30 * time.Second

// leaderProxy sends requests that must run on the leader (writes, strong
// reads) to it.
type leaderProxy struct {
	c     *ControlPlane
	proxy *httputil.ReverseProxy
}

type leaderURLKey struct{}

func newLeaderProxy(c *ControlPlane) *leaderProxy {
	p := &leaderProxy{c: c}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(leaderURLKey{}).(*url.URL))
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(ForwardedHeader, c.cfg.NodeID)
			// The leader's span continues this follower's (a no-op with
			// tracing off).
			tracing.Inject(pr.In.Context(), pr.Out.Header)
			if c.cfg.ClusterSecret != "" {
				pr.Out.Header.Set(cluster.HeaderClientIP, clientIP(pr.In))
				pr.Out.Header.Set(cluster.HeaderSecret, c.cfg.ClusterSecret)
			}
		},
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			ResponseHeaderTimeout: ForwardTimeout,
			MaxIdleConnsPerHost:   64,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c.logger.Warn("forward to leader failed", "error", err)
			cluster.WriteError(w, cluster.Errorf(cluster.ErrNotLeader, "the control-plane leader could not be reached; retry shortly"))
		},
	}
	return p
}

// leaderURL returns the leader's platform API URL.
func (c *ControlPlane) leaderURL() (*url.URL, error) {
	id, _ := c.raft.Leader()
	if id == "" {
		return nil, cluster.Errorf(cluster.ErrNotLeader, "no control-plane leader is elected; retry shortly")
	}
	m, err := c.store.Member(id)
	if err != nil || m.APIAddr == "" {
		return nil, cluster.Errorf(cluster.ErrNotLeader, "the control-plane leader %s has not published its API address yet; retry shortly", id)
	}
	return &url.URL{Scheme: "http", Host: m.APIAddr}, nil
}

// ServeHTTP forwards r to the leader.
func (p *leaderProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if by := r.Header.Get(ForwardedHeader); by != "" {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrNotLeader, "request forwarded by %s reached a node that does not lead; retry shortly", clipPath(by)))
		return
	}
	u, err := p.c.leaderURL()
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), leaderURLKey{}, u)))
}

// write runs h on the leader: a follower forwards the request. A node whose
// data volume is low on space refuses writes with 507.
func (c *ControlPlane) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.disk != nil && c.disk.LowDisk() {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInsufficientStorage, "the control plane is low on disk space and refuses writes until space is freed"))
			return
		}
		if !c.raft.IsLeader() {
			c.proxy.ServeHTTP(w, r)
			return
		}
		h(w, r)
	}
}

// leaderOnly runs h on the leader, which alone knows the nodes' leases: a
// follower forwards the request. Unlike write, it is not refused for low
// disk: it changes no state on this node (or only through Raft, which the
// leader guards).
func (c *ControlPlane) leaderOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.raft.IsLeader() {
			c.proxy.ServeHTTP(w, r)
			return
		}
		h(w, r)
	}
}

// read runs h locally (possibly stale by the replication lag) unless the
// request asks for ?consistency=strong: then it runs on the leader after a
// barrier, so it sees every write acknowledged before it started.
func (c *ControlPlane) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("consistency") {
		case "", "local":
			h(w, r)
		case "strong":
			if !c.raft.IsLeader() {
				c.proxy.ServeHTTP(w, r)
				return
			}
			if err := c.raft.Barrier(r.Context()); err != nil {
				cluster.WriteError(w, cluster.Errorf(cluster.ErrNotLeader, "could not confirm leadership for a strong read; retry shortly"))
				return
			}
			h(w, r)
		default:
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `query parameter "consistency" must be local or strong`))
		}
	}
}
