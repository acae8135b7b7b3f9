package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Tuning of the gateway's upstream hops.
const (
	// nodeDialTimeout bounds connecting to a node: an unreachable node
	// must fail fast so that the request can be held and retried.
	nodeDialTimeout = 2 * time.Second
	// nodeMaxIdlePerHost keeps enough warm connections per node for a busy
	// gateway (Go's default of 2 would redial under load).
	nodeMaxIdlePerHost = 256
	// nodeIdleConnTimeout closes connections that stayed idle this long.
	nodeIdleConnTimeout = 90 * time.Second
	// breakerTrip consecutive transport failures open a node's breaker.
	breakerTrip = 5
	// breakerOpenFor is how long an open breaker fails fast before it lets
	// one probe request through (half-open).
	breakerOpenFor = 2 * time.Second
)

// errBreakerOpen is returned for an attempt that was not sent because its
// node's circuit breaker is open (or half-open and busy with its probe).
var errBreakerOpen = errors.New("node circuit breaker is open")

// errClientGone marks a transport error the client caused (it went away,
// or its body broke the limit): it says nothing about the node, so the
// breaker ignores it.
var errClientGone = errors.New("client went away")

// newHopTransport returns the transport for the gateway's upstream hops
// (tenant nodes, control-plane nodes). It has no response-header or
// overall timeout: realtime (SSE) responses stream for as long as the
// client listens.
func newHopTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // internal hop: never through an environment proxy
		DialContext:         (&net.Dialer{Timeout: nodeDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * nodeMaxIdlePerHost,
		MaxIdleConnsPerHost: nodeMaxIdlePerHost,
		IdleConnTimeout:     nodeIdleConnTimeout,
		DisableCompression:  true, // pass the client's Accept-Encoding through untouched
	}
}

// breakers holds one circuit breaker per node address. Only transport
// failures count against a node; any HTTP answer is a success.
type breakers struct {
	mu  sync.Mutex
	m   map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
	log *slog.Logger
}

func newBreakers(log *slog.Logger) *breakers {
	return &breakers{m: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}, log: log}
}

// get returns addr's breaker, creating it on first use. Addresses are
// those of the cluster's nodes, so the map stays small.
func (b *breakers) get(addr string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	b.mu.Lock()
	defer b.mu.Unlock()
	cb := b.m[addr]
	if cb == nil {
		cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        addr,
			Timeout:     breakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= breakerTrip },
			IsExcluded:  func(err error) bool { return errors.Is(err, errClientGone) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				b.log.Info("node circuit breaker", "addr", name, "from", from.String(), "to", to.String())
			},
		})
		b.m[addr] = cb
	}
	return cb
}

// breakerTransport sends each request through its node's breaker.
type breakerTransport struct {
	next     http.RoundTripper
	breakers *breakers
}

// RoundTrip fails fast with errBreakerOpen while the node's breaker is
// open; otherwise it sends req and reports the transport outcome.
func (t *breakerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	done, err := t.breakers.get(req.URL.Host).Allow()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w (%s): %w", errBreakerOpen, req.URL.Host, err)
	}
	resp, err := t.next.RoundTrip(req)
	done(nodeFault(req, err))
	return resp, err
}

// nodeFault returns err as the breaker should count it: errClientGone
// when the client caused it (went away, or its body broke the gateway's
// limit), else err itself.
func nodeFault(req *http.Request, err error) error {
	var tooLarge *http.MaxBytesError
	if err != nil && (req.Context().Err() != nil || errors.As(err, &tooLarge)) {
		return errClientGone
	}
	return err
}

// notSent reports whether err proves the request never left the gateway:
// the breaker refused it or no connection could be made.
func notSent(err error) bool {
	if errors.Is(err, errBreakerOpen) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
