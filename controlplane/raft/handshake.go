package raft

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// The handshake that opens every TCP connection of the transport, inside
// TLS. The dialing side is the client, the accepting side the server. TLS
// 1.3 comes first, with a certificate each node makes for itself at start
// and nobody checks: it encrypts and integrity-protects the stream. Then,
// over TLS, every field a 2-byte big-endian length followed by that many
// bytes:
//
//	client -> server  hello:     label, nonce_c, id_c, cluster_c
//	server -> client  challenge: label, nonce_s
//	client -> server  proof:     mac_c
//	server -> client  proof:     id_s, cluster_s, mac_s
//
//	mac_c = HMAC-SHA256(secret, label, "client", binding, nonce_c, nonce_s, id_c, cluster_c)
//	mac_s = HMAC-SHA256(secret, label, "server", binding, nonce_c, nonce_s, id_c, cluster_c, id_s, cluster_s)
//
// binding is 32 bytes of the TLS session's exported keying material
// (RFC 5705, label tlsBindingLabel): both ends of one TLS session compute
// the same, two sessions never do. Someone in the middle, who would have
// to run one TLS session with each side, cannot make either side's proof
// valid on the other, so proving the secret also proves that the TLS
// session ends at a node that knows it: the unchecked certificates are
// authenticated after the fact.
//
// (The MAC input is each value as a 4-byte big-endian length and its bytes,
// so no two different inputs share an encoding.) Both nonces are 32 fresh
// random bytes, so a recorded handshake cannot be replayed; the role names
// keep one side's proof from being reflected back as the other's. The
// server proves itself only after the client has: a client without the
// secret learns nothing but a random nonce, so it gets no MAC to guess the
// secret from offline. Each side then refuses a peer whose cluster id is
// non-empty and differs from its own non-empty one (empty is a node that has
// not learned its cluster's id yet), or that claims its own node id.

// handshakeLabel names the protocol and its version; it is the first field
// on the wire and part of every MAC.
const handshakeLabel = "pbe-raft-v2"

// MinClusterSecretLen is the shortest Config.ClusterSecret accepted.
const MinClusterSecretLen = 16

const (
	handshakeNonceLen = 32
	handshakeMACLen   = sha256.Size
	roleClient        = "client"
	roleServer        = "server"
)

// ErrHandshakeFailed is wrapped by the error of a connection whose
// handshake failed: the peer does not share the cluster secret, belongs to
// another cluster (the error then also wraps ErrClusterMismatch), does not
// speak the protocol, or was too slow. AddVoter returns it for a node it
// cannot authenticate.
var ErrHandshakeFailed = errors.New("raft transport handshake failed")

// Why a handshake failed: the reason in logs and in the layer's counters.
const (
	reasonIO       = "io"       // the connection failed, was closed or timed out
	reasonProtocol = "protocol" // what arrived is not this protocol
	reasonSecret   = "secret"   // the peer did not prove the cluster secret
	reasonCluster  = "cluster"  // the peer belongs to another cluster
	reasonSelf     = "self"     // the peer claims this node's id
)

// handshakeError is a failed handshake and why.
type handshakeError struct {
	reason string
	err    error
}

func (e *handshakeError) Error() string   { return e.err.Error() }
func (e *handshakeError) Unwrap() []error { return []error{ErrHandshakeFailed, e.err} }

func handshakeErrorf(reason, format string, args ...any) error {
	return &handshakeError{reason: reason, err: fmt.Errorf(format, args...)}
}

// handshakeReason returns why err's handshake failed.
func handshakeReason(err error) string {
	if he, ok := errors.AsType[*handshakeError](err); ok {
		return he.reason
	}
	return reasonIO
}

// identity is what one side of a handshake presents.
type identity struct {
	nodeID    string
	clusterID string
}

// handshakeConfig is this node's side of the handshake.
type handshakeConfig struct {
	secret []byte
	nodeID string
	// clusterID returns the cluster id this node knows now ("" if none).
	clusterID func() string
}

func (hc handshakeConfig) self() identity {
	return identity{nodeID: hc.nodeID, clusterID: hc.clusterID()}
}

// clientHandshake runs the dialing side of the handshake on c and returns
// the authenticated peer. The caller sets c's deadline and closes c on
// error.
func clientHandshake(c net.Conn, hc handshakeConfig, binding string) (identity, error) {
	self := hc.self()
	nonceC := newNonce()
	if err := writeFields(c, handshakeLabel, nonceC, self.nodeID, self.clusterID); err != nil {
		return identity{}, ioError("send hello", err)
	}
	r := fieldReader{r: c}
	r.label()
	nonceS := r.read("nonce", handshakeNonceLen, handshakeNonceLen)
	if r.err != nil {
		return identity{}, r.failure("read challenge")
	}
	macC := handshakeMAC(hc.secret, roleClient, binding, nonceC, nonceS, self.nodeID, self.clusterID)
	if err := writeFields(c, string(macC)); err != nil {
		return identity{}, ioError("send proof", err)
	}
	peer := identity{nodeID: r.nodeID(), clusterID: r.clusterID()}
	macS := r.read("proof", handshakeMACLen, handshakeMACLen)
	if r.err != nil {
		if isClosed(r.err) {
			// The server closes without a word when our proof fails.
			return identity{}, handshakeErrorf(reasonSecret, "the peer closed the connection instead of proving itself: it does not share this node's cluster secret (or is shutting down)")
		}
		return identity{}, r.failure("read proof")
	}
	want := handshakeMAC(hc.secret, roleServer, binding, nonceC, nonceS, self.nodeID, self.clusterID, peer.nodeID, peer.clusterID)
	if !hmac.Equal([]byte(macS), want) {
		return identity{}, handshakeErrorf(reasonSecret, "peer %q did not prove the cluster secret", peer.nodeID)
	}
	return peer, checkPeer(self, peer)
}

// serverHandshake runs the accepting side of the handshake on c and returns
// the authenticated peer. The caller sets c's deadline and closes c on
// error.
func serverHandshake(c net.Conn, hc handshakeConfig, binding string) (identity, error) {
	r := fieldReader{r: c}
	r.label()
	nonceC := r.read("nonce", handshakeNonceLen, handshakeNonceLen)
	peer := identity{nodeID: r.nodeID(), clusterID: r.clusterID()}
	if r.err != nil {
		return identity{}, r.failure("read hello")
	}
	nonceS := newNonce()
	if err := writeFields(c, handshakeLabel, nonceS); err != nil {
		return identity{}, ioError("send challenge", err)
	}
	macC := r.read("proof", handshakeMACLen, handshakeMACLen)
	if r.err != nil {
		return identity{}, r.failure("read proof")
	}
	if !hmac.Equal([]byte(macC), handshakeMAC(hc.secret, roleClient, binding, nonceC, nonceS, peer.nodeID, peer.clusterID)) {
		return identity{}, handshakeErrorf(reasonSecret, "peer %q did not prove the cluster secret", peer.nodeID)
	}
	// The peer is authenticated: it may learn who we are, so that it can
	// tell why it is refused if it is.
	self := hc.self()
	macS := handshakeMAC(hc.secret, roleServer, binding, nonceC, nonceS, peer.nodeID, peer.clusterID, self.nodeID, self.clusterID)
	if err := writeFields(c, self.nodeID, self.clusterID, string(macS)); err != nil {
		return identity{}, ioError("send proof", err)
	}
	return peer, checkPeer(self, peer)
}

// checkPeer refuses an authenticated peer of another cluster, or one that
// claims this node's id (two nodes configured with one id).
func checkPeer(self, peer identity) error {
	if self.clusterID != "" && peer.clusterID != "" && self.clusterID != peer.clusterID {
		return &handshakeError{reason: reasonCluster, err: fmt.Errorf("%w: peer %q is in cluster %s, this node is in cluster %s",
			ErrClusterMismatch, peer.nodeID, peer.clusterID, self.clusterID)}
	}
	if peer.nodeID == self.nodeID {
		return handshakeErrorf(reasonSelf, "the peer has this node's id %q: two nodes share one id", self.nodeID)
	}
	return nil
}

// handshakeMAC returns the HMAC-SHA256 under secret of the label, role and
// fields, each prefixed by its 4-byte length.
func handshakeMAC(secret []byte, role string, fields ...string) []byte {
	m := hmac.New(sha256.New, secret)
	var n [4]byte
	for _, f := range append([]string{handshakeLabel, role}, fields...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		m.Write(n[:])
		io.WriteString(m, f)
	}
	return m.Sum(nil)
}

func newNonce() string {
	b := make([]byte, handshakeNonceLen)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return string(b)
}

// writeFields writes fields, each prefixed by its 2-byte length, in one
// write.
func writeFields(w io.Writer, fields ...string) error {
	var buf []byte
	for _, f := range fields {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(f)))
		buf = append(buf, f...)
	}
	_, err := w.Write(buf)
	return err
}

// fieldReader reads length-prefixed fields until the first error, which it
// keeps. A length outside a field's bounds is refused before anything is
// allocated, so garbage costs nothing.
type fieldReader struct {
	r   io.Reader
	err error
}

func (f *fieldReader) read(name string, minLen, maxLen int) string {
	if f.err != nil {
		return ""
	}
	var n [2]byte
	if _, err := io.ReadFull(f.r, n[:]); err != nil {
		f.err = err
		return ""
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size < minLen || size > maxLen {
		f.err = handshakeErrorf(reasonProtocol, "%s: %d bytes, want %d to %d", name, size, minLen, maxLen)
		return ""
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f.r, b); err != nil {
		f.err = err
		return ""
	}
	return string(b)
}

// label reads the protocol label and refuses anything else.
func (f *fieldReader) label() {
	got := f.read("protocol label", len(handshakeLabel), len(handshakeLabel))
	if f.err == nil && got != handshakeLabel {
		f.err = handshakeErrorf(reasonProtocol, "protocol label %q, want %q", got, handshakeLabel)
	}
}

func (f *fieldReader) nodeID() string {
	id := f.read("node id", 1, maxNodeIDLen)
	if f.err == nil && !printable(id) {
		f.err = handshakeErrorf(reasonProtocol, "node id %q has spaces or control characters", id)
	}
	return id
}

func (f *fieldReader) clusterID() string {
	id := f.read("cluster id", 0, maxClusterIDLen)
	if f.err == nil && !printable(id) {
		f.err = handshakeErrorf(reasonProtocol, "cluster id %q has spaces or control characters", id)
	}
	return id
}

// failure returns the reader's error as a handshake error of step.
func (f *fieldReader) failure(step string) error {
	if _, ok := errors.AsType[*handshakeError](f.err); ok {
		return handshakeErrorf(handshakeReason(f.err), "%s: %w", step, f.err)
	}
	return ioError(step, f.err)
}

func ioError(step string, err error) error {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return handshakeErrorf(reasonIO, "%s: timed out: %w", step, err)
	}
	return handshakeErrorf(reasonIO, "%s: %w", step, err)
}

// isClosed reports whether err means the peer closed the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// printable reports whether s has no spaces or control characters.
func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}
