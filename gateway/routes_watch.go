package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbe/pbe/cluster"
)

// Watch loop tuning.
const (
	// watchBackoffMin and watchBackoffMax bound the pause before
	// reconnecting a broken route feed; it doubles per failed connection
	// and starts over once a connection delivered a snapshot.
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
	// watchIdleTimeout is how long a connected feed may stay silent before
	// it counts as broken. The control plane pings every 15 s, so only a
	// dead connection is this quiet.
	watchIdleTimeout = 45 * time.Second
)

// errFeedIdle is why the watch loop dropped a silent feed.
var errFeedIdle = errors.New("route feed silent for too long")

// feedState tracks whether the route feed is current.
type feedState struct {
	fresh atomic.Bool
	mu    sync.Mutex
	cause error // why the feed is not fresh
}

// connected marks the feed fresh (a snapshot arrived).
func (f *feedState) connected() { f.fresh.Store(true) }

// lost marks the feed stale because of cause.
func (f *feedState) lost(cause error) {
	f.mu.Lock()
	f.cause = cause
	f.fresh.Store(false)
	f.mu.Unlock()
}

func (f *feedState) isFresh() bool { return f.fresh.Load() }

func (f *feedState) err() error {
	if f.fresh.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Errorf("%w: %v", ErrRouteFeedStale, f.cause)
}

// watchLoop follows the control plane's route feed until Stop.
func (p *Proxy) watchLoop() {
	defer close(p.done)
	backoff := watchBackoffMin
	for {
		snapshot, err := p.watchOnce()
		if p.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("watch stream ended")
		}
		p.feed.lost(err)
		if snapshot {
			backoff = watchBackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter: gateways do not reconnect in lockstep
		p.log.Warn("route feed disconnected; reconnecting", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

// watchOnce follows one connection of the feed and reports whether it
// delivered a snapshot. A connection silent for idleAfter is dropped.
func (p *Proxy) watchOnce() (snapshot bool, err error) {
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	idle := time.AfterFunc(p.idleAfter, func() { cancel(errFeedIdle) })
	defer idle.Stop()
	var got atomic.Bool
	err = p.cp.Watch(ctx, func(ev cluster.WatchEvent) {
		idle.Reset(p.idleAfter)
		if ev.Type == "snapshot" {
			got.Store(true)
		}
		p.apply(ev)
	})
	if errors.Is(context.Cause(ctx), errFeedIdle) {
		err = errFeedIdle
	}
	return got.Load(), err
}

// apply updates the route cache with one watch event.
func (p *Proxy) apply(ev cluster.WatchEvent) {
	switch ev.Type {
	case "snapshot":
		n := p.routes.replace(ev.Routes)
		p.routes.replaceDomains(ev.DomainMap)
		p.supersedeAll()
		if p.ctx.Err() == nil {
			p.feed.connected()
		}
		p.log.Info("route feed snapshot", "routes", n, "index", ev.Index)
	case "tenant":
		p.routes.setDomains(ev.Tenant, ev.Domains)
		if ev.Route == nil {
			p.routes.remove(ev.Tenant)
			p.flights.supersede(ev.Tenant, nil)
			return
		}
		r := *ev.Route
		if r.Tenant == "" {
			r.Tenant = ev.Tenant
		}
		p.routes.set(r)
		p.flights.supersede(r.Tenant, p.routes.get(r.Tenant))
	case "node":
		if ev.Node != nil {
			p.routes.updateNode(*ev.Node)
			p.supersedeAll()
		}
	}
}
