package raft

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Limits of the authenticated stream layer.
const (
	// maxPendingHandshakes bounds the inbound connections in their
	// handshake at once; more are closed on arrival, so a flood of idle
	// connections costs a bounded number of goroutines and descriptors.
	maxPendingHandshakes = 64
	// maxPendingPerHost bounds them per remote host, so that one host
	// cannot take all maxPendingHandshakes places. A peer opens a few
	// connections at a time (its pool, a pipeline, a snapshot).
	maxPendingPerHost = 8
	// handshakeWarnInterval is how often a failed handshake with one remote
	// address is logged at Warn; the failures in between are counted in the
	// next warning (and logged at Debug).
	handshakeWarnInterval = time.Minute
	// maxWarnKeys bounds the remote addresses the warning limiter tracks.
	maxWarnKeys = 1024
	// acceptBackoffMax bounds the pause after a failing Accept (out of file
	// descriptors, say).
	acceptBackoffMax = time.Second
)

// Directions and outcomes of the layer's counters (besides the reasons).
const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"
	outcomeOK   = "ok"
	outcomeBusy = "busy"
)

// newTransport returns the in-memory transport (no BindAddr) or the TCP one
// over the authenticated stream layer, wrapped by cfg.WrapStreamLayer. For
// TCP it also returns the stream layer raft uses (to dial a node before
// adding it) and the authenticated layer (for its counters).
func newTransport(cfg Config, hl *hclogAdapter, clusterID func() string, logger *slog.Logger) (raft.Transport, raft.StreamLayer, *authLayer, error) {
	if cfg.BindAddr == "" {
		_, t := raft.NewInmemTransport(raft.ServerAddress("inmem:" + cfg.NodeID))
		return t, nil, nil, nil
	}
	hc := handshakeConfig{secret: []byte(cfg.ClusterSecret), nodeID: cfg.NodeID, clusterID: clusterID}
	auth, err := newAuthLayer(cfg.BindAddr, cfg.AdvertiseAddr, hc, cfg.TransportTimeout, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	var stream raft.StreamLayer = auth
	if cfg.WrapStreamLayer != nil {
		if stream = cfg.WrapStreamLayer(auth); stream == nil {
			_ = auth.Close()
			return nil, nil, nil, configError("WrapStreamLayer", "returned nil")
		}
	}
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: cfg.MaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  hl.Named("net"),
	})
	return t, stream, auth, nil
}

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		_ = c.Close()
	}
}

// authLayer is the raft.StreamLayer of the TCP transport: every connection
// it dials or accepts has passed the handshake (handshake.go) before raft
// reads or writes a byte of it. Inbound handshakes run in their own
// goroutines, so a slow or silent client never holds up Accept; each has
// Config.TransportTimeout to finish. At most maxPendingHandshakes run at
// once, maxPendingPerHost from one host: a connection beyond that is closed
// on arrival, so a flood costs bounded memory and descriptors, and from one
// host cannot crowd out the others (from many hosts it can delay new
// connections until the flood's handshakes time out; pooled ones go on).
// Its methods may be called concurrently.
type authLayer struct {
	ln      net.Listener
	addr    net.Addr // advertised
	hs      handshakeConfig
	tls     *tls.Config   // the server's: its certificate, made at start
	timeout time.Duration // bounds each handshake
	logger  *slog.Logger
	warn    warnLimiter

	conns     chan net.Conn // authenticated inbound connections, for Accept
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // accept loop and handshakes

	mu         sync.Mutex
	closed     bool
	pending    map[net.Conn]string // inbound connections in their handshake -> remote host
	perHost    map[string]int      // pending handshakes per remote host
	maxPending int                 // maxPendingHandshakes, lowered by tests
	maxPerHost int                 // maxPendingPerHost, lowered by tests
	counts     map[[2]string]int64 // {direction, outcome or reason}
}

// newAuthLayer listens on bind and advertises advertise (default: the
// listener's address, which must then be a specific IP).
func newAuthLayer(bind, advertise string, hc handshakeConfig, timeout time.Duration, logger *slog.Logger) (*authLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft: listen on %s: %w", bind, err)
	}
	addr := ln.Addr()
	if advertise != "" {
		if addr, err = net.ResolveTCPAddr("tcp", advertise); err != nil {
			_ = ln.Close()
			return nil, configError("AdvertiseAddr", "%v", err)
		}
	}
	if ta, ok := addr.(*net.TCPAddr); !ok || ta.IP == nil || ta.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, configError("AdvertiseAddr", "%s is not an address peers can reach", addr)
	}
	tlsConfig, err := newTLSConfig()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	l := &authLayer{
		ln:         ln,
		addr:       addr,
		hs:         hc,
		tls:        tlsConfig,
		timeout:    timeout,
		logger:     logger.With("logger", "transport"),
		warn:       warnLimiter{interval: handshakeWarnInterval},
		conns:      make(chan net.Conn),
		done:       make(chan struct{}),
		pending:    map[net.Conn]string{},
		perHost:    map[string]int{},
		maxPending: maxPendingHandshakes,
		maxPerHost: maxPendingPerHost,
		counts:     map[[2]string]int64{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// authConn is a connection that passed the handshake.
type authConn struct {
	net.Conn
	peer identity
}

// raftPeerID returns the node id the peer proved in the handshake.
func (c *authConn) raftPeerID() string { return c.peer.nodeID }

// peerID returns the node id the peer of c proved in the handshake, looking
// through wrappers that expose their connection with NetConn (as tls.Conn
// does); false if c does not say.
func peerID(c net.Conn) (string, bool) {
	for c != nil {
		if ac, ok := c.(interface{ raftPeerID() string }); ok {
			return ac.raftPeerID(), true
		}
		inner, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = inner.NetConn()
	}
	return "", false
}

// Dial connects to address and runs the client side of the handshake,
// within timeout for each (Config.TransportTimeout if timeout is zero).
func (l *authLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = l.timeout
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) // authenticated by the handshake (handshake.go)
	binding, err := tlsBinding(tc)
	var peer identity
	if err == nil {
		peer, err = clientHandshake(tc, l.hs, binding)
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = c.Close()
		l.failed(dirOutbound, string(address), err)
		return nil, fmt.Errorf("raft transport: connect to %s: %w", address, err)
	}
	l.count(dirOutbound, outcomeOK)
	l.logger.Debug("raft connection authenticated", "direction", dirOutbound, "remote", string(address), "peer", peer.nodeID)
	return &authConn{Conn: tc, peer: peer}, nil
}

// Accept returns the next inbound connection that passed the handshake, or
// net.ErrClosed once the layer is closed.
func (l *authLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening, closes the connections still in their handshake
// and waits for the layer's goroutines. It is idempotent. Connections
// already returned are their owner's to close.
func (l *authLayer) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		l.closeErr = l.ln.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr returns the advertised address.
func (l *authLayer) Addr() net.Addr { return l.addr }

// acceptLoop accepts connections and starts a handshake for each, until
// Close.
func (l *authLayer) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), acceptBackoffMax)
			if ok, suppressed := l.warn.allow("accept", time.Now()); ok {
				l.logger.Warn("raft transport: accept failed", logKeyErr, err, "suppressed", suppressed)
			}
			select {
			case <-l.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if l.track(c) {
			go l.serve(c)
		}
	}
}

// track registers c as in its handshake, or closes it if the layer is
// closed or too many handshakes are pending, in all or from c's host.
func (l *authLayer) track(c net.Conn) bool {
	host := remoteHost(c)
	l.mu.Lock()
	var busy error
	switch {
	case l.closed:
		l.mu.Unlock()
		_ = c.Close()
		return false
	case len(l.pending) >= l.maxPending:
		busy = handshakeErrorf(outcomeBusy, "%d handshakes already pending", len(l.pending))
	case l.perHost[host] >= l.maxPerHost:
		busy = handshakeErrorf(outcomeBusy, "%d handshakes from this host already pending", l.perHost[host])
	default:
		l.pending[c] = host
		l.perHost[host]++
		l.wg.Add(1)
		l.mu.Unlock()
		return true
	}
	l.mu.Unlock()
	_ = c.Close()
	l.failed(dirInbound, host, busy)
	return false
}

// untrack removes c from the pending handshakes.
func (l *authLayer) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	host := l.pending[c]
	delete(l.pending, c)
	if l.perHost[host]--; l.perHost[host] <= 0 {
		delete(l.perHost, host)
	}
}

// serve runs the server side of the handshake on c and hands c to Accept if
// it passes.
func (l *authLayer) serve(c net.Conn) {
	defer l.wg.Done()
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	tc := tls.Server(c, l.tls)
	binding, err := tlsBinding(tc)
	var peer identity
	if err == nil {
		peer, err = serverHandshake(tc, l.hs, binding)
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	l.untrack(c)
	if err != nil {
		_ = c.Close()
		l.failed(dirInbound, remoteHost(c), err)
		return
	}
	l.count(dirInbound, outcomeOK)
	l.logger.Debug("raft connection authenticated", "direction", dirInbound, "remote", c.RemoteAddr().String(), "peer", peer.nodeID)
	select {
	case <-l.done:
		_ = c.Close()
		return
	default:
	}
	select {
	case l.conns <- &authConn{Conn: tc, peer: peer}:
	case <-l.done:
		_ = c.Close()
	}
}

// failed counts a failed handshake and logs it: at Warn at most once per
// handshakeWarnInterval per remote (the dialed address, or the host of an
// inbound connection, whose port changes with every attempt), else at Debug.
func (l *authLayer) failed(dir, remote string, err error) {
	reason := handshakeReason(err)
	l.count(dir, reason)
	if ok, suppressed := l.warn.allow(dir+" "+remote, time.Now()); ok {
		l.logger.Warn("raft connection refused: handshake failed", "direction", dir, "remote", remote,
			"reason", reason, "suppressed", suppressed, logKeyErr, err)
		return
	}
	l.logger.Debug("raft connection refused: handshake failed", "direction", dir, "remote", remote, "reason", reason, logKeyErr, err)
}

func (l *authLayer) count(dir, outcome string) {
	l.mu.Lock()
	l.counts[[2]string{dir, outcome}]++
	l.mu.Unlock()
}

// handshakes returns how many handshakes in direction dir ended with
// outcome (outcomeOK, outcomeBusy or a reason).
func (l *authLayer) handshakes(dir, outcome string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[[2]string{dir, outcome}]
}

// remoteHost returns the host of c's remote address.
func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// warnLimiter allows one warning per key per interval and counts the ones
// it holds back. Safe for concurrent use.
type warnLimiter struct {
	interval time.Duration

	mu   sync.Mutex
	seen map[string]*warnEntry
}

type warnEntry struct {
	last       time.Time
	suppressed int
}

// allow reports whether a warning for key may be logged now and, if so, how
// many were held back since the last one.
func (w *warnLimiter) allow(key string, now time.Time) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[string]*warnEntry{}
	}
	e, ok := w.seen[key]
	if ok && now.Sub(e.last) < w.interval {
		e.suppressed++
		return false, 0
	}
	if !ok {
		if len(w.seen) >= maxWarnKeys {
			w.prune(now)
		}
		e = &warnEntry{}
		w.seen[key] = e
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// prune forgets the keys whose interval has passed, or all of them if that
// is not enough (a flood from many addresses then logs a little more).
func (w *warnLimiter) prune(now time.Time) {
	for k, e := range w.seen {
		if now.Sub(e.last) >= w.interval {
			delete(w.seen, k)
		}
	}
	if len(w.seen) >= maxWarnKeys {
		w.seen = map[string]*warnEntry{}
	}
}

// errNoStreamLayer is returned for peer operations on the in-memory
// transport.
var errNoStreamLayer = errors.New("this node runs the in-memory transport (no BindAddr) and cannot have peers")

// tlsBindingLabel is the exporter label of the handshake's channel binding.
const tlsBindingLabel = "EXPORTER-pbe-raft-channel-binding"

// tlsBinding runs the TLS handshake of c and returns its channel binding:
// keying material only the two ends of this TLS session share.
func tlsBinding(c *tls.Conn) (string, error) {
	if err := c.Handshake(); err != nil {
		if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || isClosed(err) {
			return "", ioError("TLS", err)
		}
		return "", handshakeErrorf(reasonProtocol, "TLS: %w", err)
	}
	cs := c.ConnectionState()
	b, err := cs.ExportKeyingMaterial(tlsBindingLabel, nil, 32)
	if err != nil {
		return "", handshakeErrorf(reasonProtocol, "TLS channel binding: %w", err)
	}
	return string(b), nil
}

// newTLSConfig returns the server side's TLS configuration with a
// certificate made now, for this process only: peers do not check it (the
// handshake authenticates the session through its channel binding), so
// there is nothing to issue, distribute or rotate.
func newTLSConfig() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("raft transport: TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "pbe raft"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(100, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("raft transport: TLS certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}, nil
}
