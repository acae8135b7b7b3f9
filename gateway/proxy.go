package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
)

// ControlPlane is what a gateway in its own process needs from the control
// plane (controlplane.HTTPClient implements it). Both methods are safe for
// concurrent use.
type ControlPlane interface {
	// Route returns where tenant id is served, placing an unplaced tenant
	// on a node first. An unknown tenant is a *cluster.Error with code
	// tenant_not_found; no_node, not_leader and unavailable (or any error
	// that is not a *cluster.Error) are worth retrying shortly.
	Route(ctx context.Context, id string) (cluster.Route, error)
	// Watch calls fn with each event of the routing stream, one at a time
	// and in order, until ctx ends or the stream breaks, and returns the
	// reason. The first event of a stream is a snapshot. fn must return
	// quickly: a reader that falls behind is disconnected.
	Watch(ctx context.Context, fn func(cluster.WatchEvent)) error
}

// Defaults of ProxyConfig.
const (
	// DefaultHoldTimeout is how long a request is held while its tenant
	// moves or fails over before the client gets a 503.
	DefaultHoldTimeout = 30 * time.Second
	// DefaultMaxReplayBody is the largest request body kept in memory so
	// that a held request can be resent to another node.
	DefaultMaxReplayBody = 1 << 20
)

// Timing of held requests: the pause between attempts starts at
// holdBackoffMin and doubles up to holdBackoffMax.
const (
	holdBackoffMin = 50 * time.Millisecond
	holdBackoffMax = 500 * time.Millisecond
	// routeLookupTimeout bounds one control-plane Route call made for a
	// cache miss. The call is shared by every request waiting on that
	// tenant; each of them stops waiting at its own hold deadline.
	routeLookupTimeout = 10 * time.Second
)

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// ClusterSecret authenticates the gateway to tenant nodes (HeaderSecret).
	ClusterSecret string
	// HoldTimeout is how long a request may wait, counted from its arrival,
	// for its tenant to become reachable (a move, a failover, a node that
	// is starting) before the client gets a 503 with Retry-After.
	HoldTimeout time.Duration
	// MaxReplayBody is the largest request body buffered in memory so that
	// the request can be retried. A larger body is streamed to the node
	// once: if that attempt fails the client gets a 503 at once. 0 means
	// only requests without a body are retried after they were sent.
	MaxReplayBody int64
	// Logger receives the proxy's logs.
	Logger *slog.Logger
	// Transport sends requests to tenant nodes. Nil means a transport tuned
	// for the internal hop (see newHopTransport); tests inject one.
	Transport http.RoundTripper
	// Metrics records route-cache hits and misses and proxy latency; nil
	// records nothing.
	Metrics *metrics.Gateway
}

// DefaultProxyConfig returns the defaults; ClusterSecret must still be set.
func DefaultProxyConfig() ProxyConfig {
	return ProxyConfig{HoldTimeout: DefaultHoldTimeout, MaxReplayBody: DefaultMaxReplayBody, Logger: slog.Default()}
}

// Validate names the first field that is wrong.
func (c ProxyConfig) Validate() error {
	switch {
	case c.ClusterSecret == "":
		return errors.New("gateway: ClusterSecret is required: tenant nodes refuse requests without it")
	case c.HoldTimeout <= 0:
		return errors.New("gateway: HoldTimeout must be positive")
	case c.MaxReplayBody < 0:
		return errors.New("gateway: MaxReplayBody must not be negative")
	case c.Logger == nil:
		return errors.New("gateway: Logger is required")
	}
	return nil
}

// ErrRouteFeedStale is wrapped by Fresh while the gateway has no current
// route feed from the control plane (not started, connecting, or
// disconnected and reconnecting).
var ErrRouteFeedStale = errors.New("gateway: no fresh route feed from the control plane")

// Proxy serves tenant requests of a gateway in its own process by proxying
// them to the tenant node that owns the tenant. It implements Tenants.
//
// Routes come from a local cache that the control plane's watch stream
// keeps current; a request for a cached tenant makes no control-plane call.
// A miss asks the control plane once per tenant, however many requests
// miss at the same time. A cached route may be stale (for as long as the
// watch stream lags, or while it is disconnected); the node's answer
// (not_owner, tenant_not_found) corrects it.
//
// While a tenant moves or fails over, its requests are held and retried
// (within HoldTimeout) instead of passing the node's internal 503 on.
// ServeTenant is safe for concurrent use, also before Start and after Stop.
type Proxy struct {
	cfg       ProxyConfig
	cp        ControlPlane
	log       *slog.Logger
	rp        *httputil.ReverseProxy
	own       *http.Transport // the transport we built (nil if injected)
	breakers  *breakers
	routes    routeTable
	flights   inflight
	misses    singleflight.Group
	feed      feedState
	ctx       context.Context // ends at Stop: the watch loop, lookups, holds
	cancel    context.CancelFunc
	mu        sync.Mutex // guards started, stopped, done
	started   bool
	stopped   bool
	done      chan struct{} // closed when the watch loop has returned
	idleAfter time.Duration // watch stream silence that counts as broken
}

// NewProxy returns a proxy that resolves routes through cp. Call Start to
// follow the control plane's watch stream.
func NewProxy(cfg ProxyConfig, cp ControlPlane) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cp == nil {
		return nil, errors.New("gateway: a ControlPlane is required")
	}
	log := cfg.Logger.With("component", "gateway-proxy")
	p := &Proxy{cfg: cfg, cp: cp, log: log, routes: routeTable{m: map[string]*route{}}, idleAfter: watchIdleTimeout}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.feed.lost(errors.New("not started"))
	next := cfg.Transport
	if next == nil {
		p.own = newHopTransport()
		next = p.own
	}
	p.breakers = newBreakers(log)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      &breakerTransport{next: next, breakers: p.breakers},
		FlushInterval:  -1,
		ModifyResponse: checkNodeResponse,
		ErrorHandler:   recordAttemptError,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Start launches the watch loop, which follows the control plane's route
// feed until Stop, reconnecting with capped backoff. It returns at once;
// ctx bounds only Start itself. Start may be called once.
func (p *Proxy) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return errors.New("gateway: proxy is stopped")
	case p.started:
		return errors.New("gateway: proxy already started")
	}
	p.started = true
	p.done = make(chan struct{})
	p.feed.lost(errors.New("connecting"))
	go p.watchLoop()
	return nil
}

// Stop ends the watch loop, cancels pending route lookups and releases held
// requests (they get a 503 shutting_down), and waits for the watch loop
// until ctx ends. Requests already being proxied are the HTTP server's to
// drain. Stop is idempotent and safe to call without Start.
func (p *Proxy) Stop(ctx context.Context) error {
	p.mu.Lock()
	first := !p.stopped
	p.stopped = true
	done := p.done
	p.mu.Unlock()
	if first {
		p.cancel()
		p.feed.lost(errors.New("stopped"))
		if p.own != nil {
			p.own.CloseIdleConnections()
		}
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop gateway proxy: %w", ctx.Err())
	}
}

// TenantForDomain returns the tenant a custom domain serves, as the route
// feed last said.
func (p *Proxy) TenantForDomain(host string) (string, bool) {
	return p.routes.tenantForDomain(host)
}

// Fresh returns nil while the route feed is connected and has delivered a
// snapshot since it (re)connected, and an error wrapping ErrRouteFeedStale
// otherwise. Readiness checks use it.
func (p *Proxy) Fresh() error { return p.feed.err() }

// ServeTenant proxies r to the node serving tenant id. It holds the request
// while the tenant cannot be served (its node unreachable, its breaker
// open, the node answering not_owner, tenant_moving, no_lease, unavailable
// or shutting_down): it re-resolves the route and retries with a short
// capped backoff until HoldTimeout after arrival, then answers 503 with
// Retry-After. The client never sees such a node answer. A tenant's own
// responses, 5xx included, pass through; X-Pbe-* headers never reach the
// client. A client that goes away ends the request without an answer.
func (p *Proxy) ServeTenant(w http.ResponseWriter, r *http.Request, id string) {
	start := time.Now()
	deadline := start.Add(p.cfg.HoldTimeout)
	if p.cfg.Metrics != nil && !isRealtime(r) {
		defer func() { p.cfg.Metrics.Proxied(time.Since(start)) }()
	}
	body, err := newReplayBody(r, p.cfg.MaxReplayBody)
	if err != nil {
		writeBodyError(w, r, err)
		return
	}
	backoff := holdBackoffMin
	for n := 1; ; n++ {
		res := p.try(w, r, id, body, deadline)
		switch {
		case res.done:
			return
		case res.final != nil:
			cluster.WriteError(w, res.final)
			return
		case !body.canRetry(res.sent):
			p.failStreamed(w, r, id, res.cause)
			return
		}
		p.log.Debug("request held", "tenant", id, "attempt", n, "error", res.cause)
		if err := p.pause(r.Context(), id, &backoff, deadline); err != nil {
			if r.Context().Err() == nil {
				cluster.WriteError(w, err)
			}
			return
		}
	}
}

// pause waits before the next attempt of a held request. It returns the
// error to answer with when the request must not be retried: its hold
// deadline passed, the client went away, or the proxy stopped.
func (p *Proxy) pause(ctx context.Context, id string, backoff *time.Duration, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		p.log.Debug("hold timed out", "tenant", id)
		return cluster.Errorf(cluster.ErrUnavailable, "tenant %s is moving or failing over to another node; retry shortly", id)
	}
	t := time.NewTimer(min(*backoff, left))
	defer t.Stop()
	*backoff = min(2**backoff, holdBackoffMax)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return cluster.Errorf(cluster.ErrShuttingDown, "the gateway is shutting down; retry shortly")
	}
}

// failStreamed answers a request whose streamed body was spent on an
// attempt that failed.
func (p *Proxy) failStreamed(w http.ResponseWriter, r *http.Request, id string, cause error) {
	p.log.Debug("request not retried: body too large to resend", "tenant", id, "error", cause)
	var tooLarge *http.MaxBytesError
	if errors.As(cause, &tooLarge) {
		writeBodyError(w, r, cause) // the client's body broke the gateway's limit
		return
	}
	cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable,
		"tenant %s could not take the request and its body is too large to resend; retry shortly", id))
}

// writeBodyError answers a request whose body could not be read.
func writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		cluster.WriteJSONError(w, http.StatusRequestEntityTooLarge, cluster.ErrorBody{
			Code: "body_too_large", Message: fmt.Sprintf("request body is larger than the limit of %d bytes", tooLarge.Limit),
		})
	case r.Context().Err() != nil:
		// the client went away
	default:
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "could not read the request body"))
	}
}
