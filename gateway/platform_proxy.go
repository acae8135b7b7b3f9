package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// platformProxy forwards the base domain (platform API and dashboard) to
// the control plane.
type platformProxy struct {
	targets []*url.URL
	last    atomic.Int64 // index of the target that answered last
	rp      *httputil.ReverseProxy
	log     *slog.Logger
}

// NewPlatformProxy returns the base-domain handler of a gateway in its own
// process: every request (/api/cp/*, the dashboard; the caller mounts
// /healthz and /readyz itself) is proxied to a control-plane node, the
// client's Host, Authorization and other end-to-end headers untouched.
// Requests start at the node that answered last; when a node cannot be
// reached, the next URL is tried, which needs the body to be replayable:
// bodies up to DefaultMaxReplayBody are buffered, a larger one is streamed
// to one node only. When no node answers, the client gets a 503 JSON error
// with Retry-After. URLs that are not absolute http(s) URLs are logged and
// ignored. The handler is safe for concurrent use.
//
// With clusterSecret set, each request tells the control plane the
// client's address (cluster.HeaderClientIP, vouched for by the secret), so
// that its per-address login limits and audit entries see the client
// rather than the gateway.
func NewPlatformProxy(controlPlaneURLs []string, clusterSecret string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	p := &platformProxy{log: logger.With("component", "platform-proxy")}
	for _, raw := range controlPlaneURLs {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(raw), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.log.Error("ignoring malformed control-plane URL", "url", raw)
			continue
		}
		p.targets = append(p.targets, u)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { rewritePlatform(pr, clusterSecret) },
		Transport:      newHopTransport(),
		FlushInterval:  -1,
		ModifyResponse: stripResponseHeaders,
		ErrorHandler:   recordAttemptError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p
}

// ServeHTTP implements http.Handler.
func (p *platformProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := newReplayBody(r, DefaultMaxReplayBody)
	if err != nil {
		writeBodyError(w, r, err)
		return
	}
	n := len(p.targets)
	start := int(p.last.Load())
	for i := range n {
		idx := (start + i) % n
		a := &attempt{target: p.targets[idx]}
		out := withAttempt(r, a)
		if body.attach(out) != nil {
			break
		}
		p.rp.ServeHTTP(w, out)
		if a.err == nil {
			if idx != start {
				p.last.Store(int64(idx))
			}
			return
		}
		if r.Context().Err() != nil {
			return // the client went away
		}
		p.log.Warn("control-plane node unreachable", "url", a.target.Redacted(), "error", a.err)
		if !body.canRetry(!notSent(a.err)) {
			break
		}
	}
	cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "the control plane cannot be reached; retry shortly"))
}

// rewritePlatform sends the request to the attempt's control-plane node,
// keeping the client's Host so that the control plane sees the public
// base domain.
func rewritePlatform(pr *httputil.ProxyRequest, clusterSecret string) {
	stripInternalHeaders(pr.Out.Header)
	pr.SetURL(attemptFrom(pr.In.Context()).target)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if host, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil && clusterSecret != "" {
		pr.Out.Header.Set(cluster.HeaderClientIP, host)
		pr.Out.Header.Set(cluster.HeaderSecret, clusterSecret)
	}
	tracing.Inject(pr.Out.Context(), pr.Out.Header)
}

// stripResponseHeaders keeps internal headers from reaching the client.
func stripResponseHeaders(resp *http.Response) error {
	stripInternalHeaders(resp.Header)
	return nil
}
