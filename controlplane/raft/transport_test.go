package raft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testHandshakeConfig(secret, nodeID, clusterID string) handshakeConfig {
	return handshakeConfig{secret: []byte(secret), nodeID: nodeID, clusterID: func() string { return clusterID }}
}

// handshakeOverTCP runs client against server over a loopback connection,
// each with its channel binding, and returns what each side concluded.
func handshakeOverTCP(t *testing.T, client, server handshakeConfig, clientBinding, serverBinding string) (clientPeer identity, clientErr error, serverPeer identity, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		peer identity
		err  error
	}
	served := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		p, err := serverHandshake(c, server, serverBinding)
		served <- result{p, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	clientPeer, clientErr = clientHandshake(c, client, clientBinding)
	r := <-served
	return clientPeer, clientErr, r.peer, r.err
}

func TestHandshake(t *testing.T) {
	const other = "a-different-secret-0123456789"
	tests := []struct {
		name           string
		client, server handshakeConfig
		want           string // "" (accepted) or the reason both sides give
	}{
		{"same cluster", testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(testSecret, "cp2", "c1"), ""},
		{"client new to the cluster", testHandshakeConfig(testSecret, "cp1", ""), testHandshakeConfig(testSecret, "cp2", "c1"), ""},
		{"server new to the cluster", testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(testSecret, "cp2", ""), ""},
		{"both new", testHandshakeConfig(testSecret, "cp1", ""), testHandshakeConfig(testSecret, "cp2", ""), ""},
		{"another secret", testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(other, "cp2", "c1"), reasonSecret},
		{"another cluster", testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(testSecret, "cp2", "c2"), reasonCluster},
		{"the same node id", testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(testSecret, "cp1", "c1"), reasonSelf},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cPeer, cErr, sPeer, sErr := handshakeOverTCP(t, tc.client, tc.server, "one TLS session", "one TLS session")
			for side, err := range map[string]error{"client": cErr, "server": sErr} {
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s: got %v, want success", side, err)
				case tc.want != "" && (err == nil || handshakeReason(err) != tc.want || !errors.Is(err, ErrHandshakeFailed)):
					t.Errorf("%s: got %v, want a handshake error for reason %q", side, err, tc.want)
				case tc.want == reasonCluster && !errors.Is(err, ErrClusterMismatch):
					t.Errorf("%s: got %v, want it to wrap ErrClusterMismatch", side, err)
				}
			}
			if tc.want != "" {
				return
			}
			if want := tc.server.self(); cPeer != want {
				t.Errorf("client's peer: got %+v, want %+v", cPeer, want)
			}
			if want := tc.client.self(); sPeer != want {
				t.Errorf("server's peer: got %+v, want %+v", sPeer, want)
			}
		})
	}
}

// TestHandshake_ChannelBinding: a relay in the middle runs one TLS
// session with each side, so their channel bindings differ, and neither
// side accepts the other's proof although both know the secret.
func TestHandshake_ChannelBinding(t *testing.T) {
	_, cErr, _, sErr := handshakeOverTCP(t, testHandshakeConfig(testSecret, "cp1", "c1"), testHandshakeConfig(testSecret, "cp2", "c1"),
		"the relay's session with the client", "the relay's session with the server")
	for side, err := range map[string]error{"client": cErr, "server": sErr} {
		if err == nil || handshakeReason(err) != reasonSecret {
			t.Errorf("%s: got %v, want the proof refused", side, err)
		}
	}
}

func TestHandshakeMAC(t *testing.T) {
	secret := []byte(testSecret)
	base := handshakeMAC(secret, roleClient, "ab", "c")
	for name, mac := range map[string][]byte{
		"other role":      handshakeMAC(secret, roleServer, "ab", "c"),
		"shifted field":   handshakeMAC(secret, roleClient, "a", "bc"),
		"other secret":    handshakeMAC([]byte(testSecret+"x"), roleClient, "ab", "c"),
		"an extra field":  handshakeMAC(secret, roleClient, "ab", "c", ""),
		"fields reversed": handshakeMAC(secret, roleClient, "c", "ab"),
	} {
		if bytes.Equal(mac, base) {
			t.Errorf("%s: same MAC as the base input", name)
		}
	}
}

// newTestLayer starts an authenticated layer on loopback.
func newTestLayer(t *testing.T, nodeID string, timeout time.Duration, logs io.Writer) *authLayer {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := newAuthLayer("127.0.0.1:0", "", testHandshakeConfig(testSecret, nodeID, ""), timeout, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// acceptAsync calls l.Accept in a goroutine.
func acceptAsync(l *authLayer) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// rawConn opens a TCP connection to l that says nothing.
func rawConn(t *testing.T, l *authLayer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitClosedByPeer reads c until the other side closes it.
func waitClosedByPeer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(c); err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatalf("%s: still open", what)
		}
	}
}

func (l *authLayer) pendingHandshakes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

func TestAuthLayer_DialAccept(t *testing.T) {
	server := newTestLayer(t, "cp2", waitTimeout, io.Discard)
	client := newTestLayer(t, "cp1", waitTimeout, io.Discard)
	accepted := acceptAsync(server)
	cc, err := client.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer cc.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("Accept failed")
	}
	defer sc.Close()
	if id, _ := peerID(cc); id != "cp2" {
		t.Errorf("client's peer: got %q, want cp2", id)
	}
	if id, _ := peerID(sc); id != "cp1" {
		t.Errorf("server's peer: got %q, want cp1", id)
	}
	// After the handshake the connection is raft's, with no deadline left.
	if _, err := cc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ping" {
		t.Errorf("read after the handshake: got %q, %v; want ping", buf, err)
	}
	if client.handshakes(dirOutbound, outcomeOK) != 1 || server.handshakes(dirInbound, outcomeOK) != 1 {
		t.Errorf("ok counts: client %d, server %d; want 1 and 1", client.handshakes(dirOutbound, outcomeOK), server.handshakes(dirInbound, outcomeOK))
	}
}

// TestAuthLayer_SlowClientDoesNotBlockAccept: a client that says nothing
// holds up no one, and is dropped at the handshake deadline.
func TestAuthLayer_SlowClientDoesNotBlockAccept(t *testing.T) {
	server := newTestLayer(t, "cp2", 2*time.Second, io.Discard)
	client := newTestLayer(t, "cp1", waitTimeout, io.Discard)
	silent := rawConn(t, server)
	eventually(t, "the silent client's handshake to start", func() bool { return server.pendingHandshakes() == 1 })

	accepted := acceptAsync(server)
	cc, err := client.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("Dial while a silent client is pending: %v", err)
	}
	defer cc.Close()
	if sc := <-accepted; sc == nil {
		t.Fatal("Accept failed")
	} else {
		_ = sc.Close()
	}
	if n := server.handshakes(dirInbound, reasonIO); n != 0 {
		t.Errorf("the silent client was dropped before the other was accepted (%d io failures)", n)
	}
	waitClosedByPeer(t, silent, "the silent client's connection")
	eventually(t, "the timeout to be counted", func() bool { return server.handshakes(dirInbound, reasonIO) == 1 })
}

func TestAuthLayer_Busy(t *testing.T) {
	for _, limit := range []string{"in all", "per host"} {
		t.Run(limit, func(t *testing.T) {
			server := newTestLayer(t, "cp2", waitTimeout, io.Discard)
			server.mu.Lock()
			if limit == "in all" {
				server.maxPending = 2
			} else {
				server.maxPerHost = 2
			}
			server.mu.Unlock()
			idle := []net.Conn{rawConn(t, server), rawConn(t, server)}
			eventually(t, "two pending handshakes", func() bool { return server.pendingHandshakes() == 2 })
			waitClosedByPeer(t, rawConn(t, server), "a connection beyond the limit")
			// The refusal is counted right after the connection is closed.
			eventually(t, "the refusal to be counted", func() bool { return server.handshakes(dirInbound, outcomeBusy) == 1 })
			// A place freed is a place taken again.
			_ = idle[0].Close()
			eventually(t, "the closed one to leave", func() bool { return server.pendingHandshakes() == 1 })
			idle[0] = rawConn(t, server)
			eventually(t, "two pending handshakes again", func() bool { return server.pendingHandshakes() == 2 })
			if n := server.handshakes(dirInbound, outcomeBusy); n != 1 {
				t.Errorf("busy count after a place was freed: got %d, want 1", n)
			}

			accepted := acceptAsync(server)
			if err := server.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for i, c := range idle {
				waitClosedByPeer(t, c, fmt.Sprintf("pending connection %d after Close", i))
			}
			if c := <-accepted; c != nil {
				t.Errorf("Accept after Close: got a connection, want net.ErrClosed")
			}
			if _, err := server.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close: got %v, want net.ErrClosed", err)
			}
			if err := server.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestAuthLayer_WarnOncePerRemote: repeated garbage from one address is
// logged at Warn once, and counted every time.
func TestAuthLayer_WarnOncePerRemote(t *testing.T) {
	logs := &logBuffer{}
	server := newTestLayer(t, "cp2", waitTimeout, logs)
	const attempts = 5
	for range attempts {
		c := rawConn(t, server)
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		waitClosedByPeer(t, c, "a garbage connection")
	}
	eventually(t, "the failures to be counted", func() bool { return server.handshakes(dirInbound, reasonProtocol) == attempts })
	// A failure is counted just before it is logged.
	var warns, debugs int
	eventually(t, "every failure to be logged", func() bool {
		warns, debugs = 0, 0
		for line := range strings.Lines(logs.String()) {
			switch {
			case !strings.Contains(line, "handshake failed"):
			case strings.Contains(line, "level=WARN"):
				warns++
				if !strings.Contains(line, "reason=protocol") || !strings.Contains(line, "remote=127.0.0.1") {
					t.Fatalf("warning %q lacks the reason or the remote", line)
				}
			case strings.Contains(line, "level=DEBUG"):
				debugs++
			}
		}
		return warns+debugs == attempts
	})
	if warns != 1 {
		t.Errorf("log lines: got %d Warn and %d Debug, want 1 and %d\n%s", warns, debugs, attempts-1, logs)
	}
}

func TestWarnLimiter(t *testing.T) {
	w := warnLimiter{interval: time.Minute}
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		key        string
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0},
		{"a", 30 * time.Second, false, 0},
		{"a", time.Minute, true, 2},
		{"a", time.Minute + time.Second, false, 0},
	}
	for i, s := range steps {
		ok, suppressed := w.allow(s.key, t0.Add(s.at))
		if ok != s.ok || suppressed != s.suppressed {
			t.Errorf("step %d (%s at %s): got %v, %d; want %v, %d", i, s.key, s.at, ok, suppressed, s.ok, s.suppressed)
		}
	}
	t.Run("bounded", func(t *testing.T) {
		w := warnLimiter{interval: time.Minute}
		for i := range maxWarnKeys + 10 {
			w.allow(strings.Repeat("x", i%7)+string(rune(i)), t0)
		}
		if len(w.seen) > maxWarnKeys {
			t.Errorf("keys tracked: got %d, want at most %d", len(w.seen), maxWarnKeys)
		}
	})
}

// wireTap relays TCP connections to target, recording what the client
// sent; tamper, when set, may change each chunk the client sends.
type wireTap struct {
	ln     net.Listener
	mu     sync.Mutex
	sent   []byte
	tamper func(total int, b []byte)
}

func newWireTap(t *testing.T, target string) *wireTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireTap{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						w.mu.Lock()
						if w.tamper != nil {
							w.tamper(len(w.sent), buf[:n])
						}
						w.sent = append(w.sent, buf[:n]...)
						w.mu.Unlock()
						if _, err := s.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = s.Close()
			}()
		}
	}()
	return w
}

// TestAuthLayer_StreamIsEncrypted: what a connection carries cannot be
// read on the wire, and a byte changed on the way is an error, not data.
func TestAuthLayer_StreamIsEncrypted(t *testing.T) {
	server := newTestLayer(t, "cp2", waitTimeout, io.Discard)
	client := newTestLayer(t, "cp1", waitTimeout, io.Discard)
	tap := newWireTap(t, server.Addr().String())
	accepted := acceptAsync(server)
	cc, err := client.Dial(raft.ServerAddress(tap.ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("Dial through the tap: %v", err)
	}
	defer cc.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("Accept failed")
	}
	defer sc.Close()
	secret := []byte("tenant acme-secret-record 4f2c91")
	if _, err := cc.Write(secret); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(secret))
	_ = sc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the server read %q, %v; want %q", got, err, secret)
	}
	tap.mu.Lock()
	onWire := bytes.Contains(tap.sent, []byte("acme-secret-record"))
	handshook := len(tap.sent)
	tap.tamper = func(total int, b []byte) {
		if total >= handshook {
			b[len(b)/2] ^= 0xff
		}
	}
	tap.mu.Unlock()
	if onWire {
		t.Fatal("the record crossed the wire in the clear")
	}

	if _, err := cc.Write(secret); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(waitTimeout))
	n, err := io.ReadFull(sc, got)
	if err == nil {
		t.Fatalf("a tampered record was read as %q", got[:n])
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("a tampered record: timed out instead of failing")
	}
}
