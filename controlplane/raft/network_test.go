package raft

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errPartitioned is the error of a Dial the test network refuses.
var errPartitioned = errors.New("test network: partitioned")

// network injects partitions between the nodes of a test. Each node's
// stream layer is wrapped by it (Config.WrapStreamLayer = nw.wrap(id)); a
// test can then cut a node off from all the others, in both directions, and
// heal it. A cut node can neither dial nor be dialed, what it accepts is
// closed at once, and cutting it closes the connections it already had.
// Every connection between two nodes is dialed or accepted by each of them,
// so closing a cut node's own connections severs all of its links. A node
// restarted while cut stays cut. Safe for concurrent use.
type network struct {
	mu     sync.Mutex
	cut    map[string]bool        // node id -> cut off
	ids    map[string]string      // raft address -> node id
	layers map[string]*faultLayer // node id -> its current layer
}

func newNetwork() *network {
	return &network{cut: map[string]bool{}, ids: map[string]string{}, layers: map[string]*faultLayer{}}
}

// wrap returns node id's Config.WrapStreamLayer.
func (nw *network) wrap(id string) func(raft.StreamLayer) raft.StreamLayer {
	return func(inner raft.StreamLayer) raft.StreamLayer {
		l := &faultLayer{StreamLayer: inner, nw: nw, id: id, conns: map[*faultConn]struct{}{}}
		nw.mu.Lock()
		nw.ids[inner.Addr().String()] = id
		nw.layers[id] = l
		nw.mu.Unlock()
		return l
	}
}

// isolate cuts node id off from every other node.
func (nw *network) isolate(id string) {
	nw.mu.Lock()
	nw.cut[id] = true
	l := nw.layers[id]
	nw.mu.Unlock()
	if l != nil {
		l.closeAll()
	}
}

// heal reconnects node id.
func (nw *network) heal(id string) {
	nw.mu.Lock()
	delete(nw.cut, id)
	nw.mu.Unlock()
}

func (nw *network) isCut(id string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.cut[id]
}

// blocked reports whether node from may not reach addr.
func (nw *network) blocked(from string, addr raft.ServerAddress) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	to, known := nw.ids[string(addr)]
	return nw.cut[from] || (known && nw.cut[to])
}

// faultLayer is one node's stream layer on the test network.
type faultLayer struct {
	raft.StreamLayer
	nw *network
	id string

	mu    sync.Mutex
	conns map[*faultConn]struct{}
}

func (l *faultLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.nw.blocked(l.id, addr) {
		return nil, fmt.Errorf("%s to %s: %w", l.id, addr, errPartitioned)
	}
	c, err := l.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	fc, ok := l.track(c, func() bool { return l.nw.blocked(l.id, addr) })
	if !ok {
		return nil, fmt.Errorf("%s to %s: %w", l.id, addr, errPartitioned)
	}
	return fc, nil
}

func (l *faultLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		if fc, ok := l.track(c, func() bool { return l.nw.isCut(l.id) }); ok {
			return fc, nil
		}
	}
}

// track registers c unless cut says the link is down, in which case it
// closes c. Checking under l.mu orders it with closeAll: a connection is
// either refused here or closed there.
func (l *faultLayer) track(c net.Conn, cut func() bool) (*faultConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cut() {
		_ = c.Close()
		return nil, false
	}
	fc := &faultConn{Conn: c, layer: l}
	l.conns[fc] = struct{}{}
	return fc, true
}

// closeAll closes every connection of this node.
func (l *faultLayer) closeAll() {
	l.mu.Lock()
	conns := l.conns
	l.conns = map[*faultConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// faultConn is a connection of the test network.
type faultConn struct {
	net.Conn
	layer *faultLayer
}

func (c *faultConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.conns, c)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the authenticated connection, as tls.Conn does.
func (c *faultConn) NetConn() net.Conn { return c.Conn }
