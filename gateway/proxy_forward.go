package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// retryableNodeCodes are the HeaderError codes with which a tenant node
// says "not here or not now": the request is held and retried, and the
// client never sees the node's answer.
var retryableNodeCodes = map[string]bool{
	cluster.ErrNotOwner.Code:     true,
	cluster.ErrTenantMoving.Code: true,
	cluster.ErrNoLease.Code:      true,
	cluster.ErrUnavailable.Code:  true,
	cluster.ErrShuttingDown.Code: true,
}

// finalLookupCodes are the control plane's Route errors that are the
// client's answer; any other Route error is retried within the hold.
var finalLookupCodes = map[string]bool{
	cluster.ErrTenantNotFound.Code:   true,
	cluster.ErrInvalidTenantID.Code:  true,
	cluster.ErrReservedTenantID.Code: true,
}

// nodeError is a tenant node's own answer (HeaderError set) that must not
// reach the client as it is.
type nodeError struct{ code string }

func (e *nodeError) Error() string { return "tenant node answered " + e.code }

// attempt is one try of a request against one upstream. It travels in the
// request's context from ServeTenant through the ReverseProxy callbacks.
type attempt struct {
	route  *route   // tenant proxy: where the attempt goes
	target *url.URL // platform proxy: where the attempt goes
	// err is what the ErrorHandler recorded: nil means a response was
	// written to the client; otherwise nothing was written.
	err error
}

type attemptKey struct{}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

// withAttempt returns a shallow copy of r that carries a.
func withAttempt(r *http.Request, a *attempt) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
}

// recordAttemptError is the ReverseProxies' ErrorHandler: it records why
// an attempt failed and writes nothing, so that the caller can retry.
func recordAttemptError(w http.ResponseWriter, r *http.Request, err error) {
	if a := attemptFrom(r.Context()); a != nil {
		a.err = err
		return
	}
	cluster.WriteError(w, cluster.Errorf(cluster.ErrUnavailable, "upstream unavailable; retry shortly"))
}

// outcome is what one attempt of a tenant request leads to.
type outcome struct {
	done  bool  // the client has its answer, or went away
	final error // answer this and stop
	sent  bool  // the request may have reached the node (a streamed body is spent)
	cause error // why the request is held (for logs)
}

// try makes one attempt of r to tenant id: resolve the route, proxy.
func (p *Proxy) try(w http.ResponseWriter, r *http.Request, id string, body *replayBody, deadline time.Time) outcome {
	rctx, rspan := tracing.Start(r.Context(), "gateway.route")
	rt, err := p.lookup(rctx, id, deadline)
	if err == nil && rspan.IsRecording() {
		rspan.SetAttributes(attribute.String("pbe.node", rt.Node), attribute.String("pbe.epoch", rt.epoch))
	}
	tracing.Finish(rspan, err)
	if err != nil {
		return lookupOutcome(r, err)
	}
	a := &attempt{route: rt}
	pctx, pspan := tracing.Start(r.Context(), "gateway.proxy")
	if pspan.IsRecording() {
		pspan.SetAttributes(attribute.String("pbe.node", rt.Node), attribute.String("server.address", rt.Addr))
	}
	defer func() { tracing.Finish(pspan, a.err) }()
	ctx, cancel := context.WithCancelCause(pctx)
	defer cancel(nil)
	ctl := &attemptCtl{route: rt, cancel: cancel}
	p.flights.add(id, ctl)
	defer p.flights.remove(id, ctl)
	if cur := p.routes.get(id); cur != rt && cur != nil {
		p.flights.supersede(id, cur) // the route changed between lookup and now
	}
	out := withAttempt(r.WithContext(ctx), a)
	if err := body.attach(out); err != nil {
		return outcome{final: cluster.Errorf(cluster.ErrUnavailable, "could not resend the request body; retry")}
	}
	p.rp.ServeHTTP(w, out)
	return p.attemptOutcome(r, id, a)
}

// lookupOutcome classifies a failed route lookup.
func lookupOutcome(r *http.Request, err error) outcome {
	if r.Context().Err() != nil {
		return outcome{done: true}
	}
	if e, ok := cluster.AsError(err); ok && finalLookupCodes[e.Code] {
		return outcome{final: e}
	}
	return outcome{cause: err}
}

// attemptOutcome classifies a proxied attempt and drops the route that
// led to it when that route is wrong or its node unreachable.
func (p *Proxy) attemptOutcome(r *http.Request, id string, a *attempt) outcome {
	if a.err == nil || r.Context().Err() != nil {
		return outcome{done: true}
	}
	rt := a.route
	var ne *nodeError
	if errors.As(a.err, &ne) {
		if ne.code == cluster.ErrTenantNotFound.Code {
			p.routes.forget(id, rt)
			return outcome{final: cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s not found", id)}
		}
		// Without a live feed no event will correct a stale route: ask again.
		if ne.code == cluster.ErrNotOwner.Code || !p.feed.isFresh() {
			p.routes.forget(id, rt)
		}
		return outcome{sent: true, cause: fmt.Errorf("node %s at epoch %d: %w", rt.Node, rt.Epoch, a.err)}
	}
	p.routes.forget(id, rt) // unreachable, or its breaker is open
	return outcome{sent: !notSent(a.err), cause: fmt.Errorf("node %s at %s: %w", rt.Node, rt.Addr, a.err)}
}

// lookup returns tenant id's route: from the cache, or from one
// control-plane call shared by every request that misses at the same time.
// It waits for that call until ctx ends or the hold deadline passes.
func (p *Proxy) lookup(ctx context.Context, id string, deadline time.Time) (*route, error) {
	if rt := p.routes.get(id); rt != nil {
		p.cfg.Metrics.RouteCache(true)
		tracing.Annotate(ctx, attribute.Bool("pbe.route_cached", true))
		return rt, nil
	}
	p.cfg.Metrics.RouteCache(false)
	tracing.Annotate(ctx, attribute.Bool("pbe.route_cached", false))
	// The call runs for every request that misses meanwhile, under the
	// proxy's lifetime; it joins the trace of the request that started it.
	ch := p.misses.DoChan(id, func() (any, error) { return p.resolve(tracing.WithSpanOf(p.ctx, ctx), id) })
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*route), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("route tenant %s: the control plane did not answer within the hold", id)
	}
}

// resolve asks the control plane for tenant id's route and caches it.
// Only one resolve per tenant runs at a time (singleflight). ctx is the
// proxy's (not one request's, since others may share the answer).
func (p *Proxy) resolve(ctx context.Context, id string) (*route, error) {
	if rt := p.routes.get(id); rt != nil {
		return rt, nil // cached while this call waited its turn
	}
	ctx, cancel := context.WithTimeout(ctx, routeLookupTimeout)
	defer cancel()
	r, err := p.cp.Route(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("route tenant %s: %w", id, err)
	}
	if r.Tenant == "" {
		r.Tenant = id
	}
	var rt *route
	if r.Tenant == id {
		rt = p.routes.offer(r)
	}
	if rt == nil {
		return nil, fmt.Errorf("route tenant %s: the control plane answered an unusable route (tenant %q, addr %q)", id, r.Tenant, r.Addr)
	}
	return rt, nil
}

// rewrite is the tenant ReverseProxy's Rewrite: send the request to the
// attempt's node, keep the client's Host, and authenticate the hop.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	rt := attemptFrom(pr.In.Context()).route
	stripInternalHeaders(pr.Out.Header)
	pr.SetURL(rt.target)
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	h := pr.Out.Header
	h.Set(cluster.HeaderSecret, p.cfg.ClusterSecret)
	h.Set(cluster.HeaderTenant, rt.Tenant)
	h.Set(cluster.HeaderEpoch, rt.epoch)
	tracing.Inject(pr.Out.Context(), h)
}

// checkNodeResponse is the tenant ReverseProxy's ModifyResponse: it strips
// internal headers and turns a node's own retryable or not-found answer
// into an error, so that nothing is written to the client.
func checkNodeResponse(resp *http.Response) error {
	code := resp.Header.Get(cluster.HeaderError)
	stripInternalHeaders(resp.Header)
	if retryableNodeCodes[code] || code == cluster.ErrTenantNotFound.Code {
		return &nodeError{code: code}
	}
	return nil
}
