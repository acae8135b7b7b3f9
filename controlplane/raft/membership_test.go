package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pbe/pbe/cluster"
)

// startJoiner starts a fast node that waits to be added to a cluster.
func startJoiner(t *testing.T, id, secret string) *testNode {
	t.Helper()
	cfg := testConfig(t, id, t.TempDir())
	fast(&cfg)
	cfg.BindAddr = freeAddrs(t, 1)[0]
	cfg.Join = true
	cfg.ClusterSecret = secret
	return startNode(t, cfg)
}

// writeLoad creates tenants load-0, load-1, ... through whichever of nodes
// leads until stop is called; created and stop return how many it created.
func writeLoad(t *testing.T, nodes func() []*testNode) (created func() int, stop func() int) {
	var n atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			id := fmt.Sprintf("load-%d", i)
			if err := tryApply(nodes(), createTenantCmd(id, "req-"+id), done); err != nil {
				select {
				case <-done:
				default:
					t.Errorf("create %s under load: %v", id, err)
				}
				return
			}
			n.Add(1)
		}
	})
	created = func() int { return int(n.Load()) }
	return created, func() int {
		close(done)
		wg.Wait()
		return created()
	}
}

// TestCluster_AddRemoveUnderLoad adds a fourth node while writes go on, then
// removes one: the new node ends with the same state, the remaining three
// keep committing.
func TestCluster_AddRemoveUnderLoad(t *testing.T) {
	nodes := startClusterWith(t, 3, fast)
	leader := leaderOf(t, nodes)
	mustCreate(t, nodes, "before")

	joiner := startJoiner(t, "cp4", testSecret)
	if got := joiner.node.Status().LastIndex; got != 0 {
		t.Errorf("last index of a joining node before it is added: got %d, want 0", got)
	}
	var mu sync.Mutex
	current := slices.Clone(nodes)
	created, stop := writeLoad(t, func() []*testNode { mu.Lock(); defer mu.Unlock(); return current })
	eventually(t, "writes to be going on", func() bool { return created() >= 5 })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := leader.node.AddVoter(ctx, "cp4", joiner.node.Addr()); err != nil {
		t.Fatalf("AddVoter cp4: %v", err)
	}
	all := append(slices.Clone(nodes), joiner)
	mu.Lock()
	current = all
	mu.Unlock()
	eventually(t, "cp4 to receive entries under load", func() bool { return len(tenantIDs(t, joiner)) > 3 })
	t.Logf("created %d tenants under load", stop())
	waitConverged(t, all)
	if got, want := joiner.node.ClusterID(), leader.node.ClusterID(); got != want {
		t.Errorf("cluster id of cp4: got %q, want %q", got, want)
	}
	if got := joiner.node.Members(); len(got) != 4 {
		t.Errorf("Members on cp4: got %v, want 4 voters", got)
	}

	leader = leaderOf(t, all)
	removed := followerOf(all, leader)
	if err := leader.node.RemoveServer(ctx, removed.cfg.NodeID); err != nil {
		t.Fatalf("RemoveServer %s: %v", removed.cfg.NodeID, err)
	}
	remaining := without(all, removed)
	for i := range 3 {
		mustCreate(t, remaining, fmt.Sprintf("after-%d", i))
	}
	waitConverged(t, remaining)
	for _, tn := range remaining {
		if got := tn.node.Members(); len(got) != 3 || slices.ContainsFunc(got, func(p Peer) bool { return p.ID == removed.cfg.NodeID }) {
			t.Errorf("Members on %s: got %v, want the three remaining", tn.cfg.NodeID, got)
		}
	}
}

// TestCluster_ForeignClusterRefused: a node of another cluster, with the same
// secret, can neither be added nor exchange entries with this cluster.
func TestCluster_ForeignClusterRefused(t *testing.T) {
	nodes := startClusterWith(t, 3, fast)
	leader := leaderOf(t, nodes)
	mustCreate(t, nodes, "home")

	cfg := testConfig(t, "other1", t.TempDir())
	fast(&cfg)
	cfg.BindAddr = freeAddrs(t, 1)[0]
	foreign := startNode(t, cfg)
	mustCreate(t, []*testNode{foreign}, "away")
	for _, tn := range append(slices.Clone(nodes), foreign) {
		eventually(t, tn.cfg.NodeID+" to know its cluster id", func() bool { return tn.node.ClusterID() != "" })
	}
	foreignID, homeID := foreign.node.ClusterID(), leader.node.ClusterID()
	if foreignID == homeID {
		t.Fatalf("two clusters share the id %s", homeID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := leader.node.AddVoter(ctx, "other1", foreign.node.Addr())
	if !errors.Is(err, ErrClusterMismatch) || !errors.Is(err, ErrHandshakeFailed) {
		t.Fatalf("AddVoter of a node of another cluster: got %v, want ErrClusterMismatch and ErrHandshakeFailed", err)
	}
	if got := leader.node.Members(); len(got) != 3 {
		t.Errorf("Members after the refused AddVoter: got %v, want the three", got)
	}
	if n := leader.node.auth.handshakes(dirOutbound, reasonCluster); n == 0 {
		t.Errorf("cluster refusals by the leader: got 0, want some")
	}
	eventually(t, "the foreign node to refuse the leader", func() bool { return foreign.node.auth.handshakes(dirInbound, reasonCluster) > 0 })

	// Even in the configuration (raft's AddVoter, without the check), it is
	// never sent an entry: every connection is refused in the handshake.
	checkUnreachableVoter(t, nodes, foreign, func() int64 { return foreign.node.auth.handshakes(dirInbound, reasonCluster) })
	if got := tenantIDs(t, foreign); !slices.Equal(got, []string{"away"}) {
		t.Errorf("tenants of the foreign node: got %v, want [away]", got)
	}
	if foreign.node.ClusterID() != foreignID || !foreign.node.IsLeader() || len(foreign.node.Members()) != 1 {
		t.Errorf("foreign node: cluster id %q, leader %v, members %v; want %q, its own single-node cluster",
			foreign.node.ClusterID(), foreign.node.IsLeader(), foreign.node.Members(), foreignID)
	}
}

// checkUnreachableVoter puts node into the configuration of nodes with
// raft's own AddVoter (bypassing Node.AddVoter's check), writes, waits until
// refused() grows (the leader tried to reach it and was refused), checks the
// cluster still commits and removes node again.
func checkUnreachableVoter(t *testing.T, nodes []*testNode, node *testNode, refused func() int64) {
	t.Helper()
	leader := leaderOf(t, nodes)
	before := refused()
	lastIndex := node.node.Status().LastIndex
	id := node.cfg.NodeID
	if err := leader.node.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(node.node.Addr()), 0, waitTimeout).Error(); err != nil {
		t.Fatalf("raft AddVoter %s: %v", id, err)
	}
	mustCreate(t, nodes, "home-2")
	eventually(t, "the leader to try "+id+" and be refused", func() bool { return refused() > before })
	mustCreate(t, nodes, "home-3")
	if got := node.node.Status().LastIndex; got != lastIndex {
		t.Errorf("last index of %s: got %d, want %d (nothing received)", id, got, lastIndex)
	}
	leader = leaderOf(t, nodes)
	if err := leader.node.RemoveServer(context.Background(), id); err != nil {
		t.Fatalf("RemoveServer %s: %v", id, err)
	}
	mustCreate(t, nodes, "home-4")
	waitConverged(t, nodes)
}

// TestCluster_WrongSecret: a node with another secret cannot be added nor
// reached, and raw clients that do not know the secret are dropped without
// affecting the cluster.
func TestCluster_WrongSecret(t *testing.T) {
	nodes := startClusterWith(t, 3, fast)
	leader := leaderOf(t, nodes)
	mustCreate(t, nodes, "home")

	intruder := startJoiner(t, "intruder", "another-secret-0123456789abcdef")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := leader.node.AddVoter(ctx, "intruder", intruder.node.Addr())
	if !errors.Is(err, ErrHandshakeFailed) || errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("AddVoter of a node with another secret: got %v, want ErrHandshakeFailed", err)
	}
	if n := leader.node.auth.handshakes(dirOutbound, reasonSecret); n == 0 {
		t.Errorf("secret refusals by the leader: got 0, want some")
	}
	refused := func() int64 { return intruder.node.auth.handshakes(dirInbound, reasonSecret) }
	eventually(t, "the intruder to refuse the leader", func() bool { return refused() > 0 })
	checkUnreachableVoter(t, nodes, intruder, refused)
	if last, ids := intruder.node.Status().LastIndex, tenantIDs(t, intruder); last != 0 || len(ids) != 0 {
		t.Errorf("intruder: last index %d, tenants %v; want nothing received", last, ids)
	}

	t.Run("raw clients without the secret are dropped", func(t *testing.T) {
		leader := leaderOf(t, nodes)
		auth := leader.node.auth
		protocolBefore, secretBefore := auth.handshakes(dirInbound, reasonProtocol), auth.handshakes(dirInbound, reasonSecret)
		for _, tc := range garbageClients() {
			if got := tc.run(t, leader.node.Addr()); len(got) > tc.maxReply {
				t.Errorf("%s: the server sent %d bytes, want at most %d", tc.name, len(got), tc.maxReply)
			}
		}
		eventually(t, "the refusals to be counted", func() bool {
			return auth.handshakes(dirInbound, reasonProtocol)-protocolBefore >= 3 && auth.handshakes(dirInbound, reasonSecret)-secretBefore >= 1
		})
		mustCreate(t, nodes, "after-garbage")
		waitConverged(t, nodes)
	})
}

// garbageClient is a raw TCP client that does not know the secret.
type garbageClient struct {
	name string
	// send writes to conn; it may read the server's challenge.
	send func(conn net.Conn) error
	// tls: the client speaks TLS first, as a peer does, and sends over it.
	tls bool
	// maxReply is how many bytes the server may send before closing: the
	// challenge, for a client that sent a well-formed hello (over TLS),
	// or a TLS alert for one that does not speak TLS.
	maxReply int
}

// run connects to addr, sends, and returns what the server sent before it
// closed the connection (it fails the test if the server does not close).
func (g garbageClient) run(t *testing.T, addr string) []byte {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("%s: dial: %v", g.name, err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(waitTimeout))
	conn := raw
	if g.tls {
		tc := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: TLS: %v", g.name, err)
		}
		conn = tc
	}
	if err := g.send(conn); err != nil {
		t.Fatalf("%s: send: %v", g.name, err)
	}
	reply, err := io.ReadAll(conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("%s: the server did not close the connection", g.name)
	}
	return reply
}

// challengeLen is the size of the server's challenge on the wire.
var challengeLen = 2 + len(handshakeLabel) + 2 + handshakeNonceLen

// tlsAlertLen is one unencrypted TLS alert record.
const tlsAlertLen = 7

func garbageClients() []garbageClient {
	write := func(b []byte) func(net.Conn) error {
		return func(c net.Conn) error { _, err := c.Write(b); return err }
	}
	hello := func(label string) func(net.Conn) error {
		return func(c net.Conn) error {
			return writeFields(c, label, newNonce(), "mallory", "")
		}
	}
	return []garbageClient{
		{name: "an HTTP request", maxReply: tlsAlertLen, send: write([]byte("GET / HTTP/1.1\r\nHost: raft\r\n\r\n"))},
		{name: "a raft RPC without a handshake", maxReply: tlsAlertLen, send: write([]byte{0, 0x85, 0xa4, 'T', 'e', 'r', 'm', 0x01})},
		{name: "a raft RPC over TLS without a handshake", tls: true, send: write([]byte{0, 0x85, 0xa4, 'T', 'e', 'r', 'm', 0x01})},
		{name: "a hello of another protocol version", tls: true, send: hello("pbe-raft-v0")},
		{name: "a hello of the previous protocol, without TLS", maxReply: tlsAlertLen, send: hello("pbe-raft-v1")},
		{name: "a hello with a forged proof", tls: true, maxReply: challengeLen, send: func(c net.Conn) error {
			if err := hello(handshakeLabel)(c); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, make([]byte, challengeLen)); err != nil {
				return err
			}
			return writeFields(c, newNonce()) // 32 random bytes, the size of a MAC
		}},
	}
}

// TestAddVoter_Checks covers AddVoter's refusals that need no second
// cluster.
func TestAddVoter_Checks(t *testing.T) {
	ctx := context.Background()
	t.Run("in-memory transport", func(t *testing.T) {
		tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
		tn.waitLeader()
		eventually(t, "leadership", tn.node.IsLeader)
		err := tn.node.AddVoter(ctx, "cp2", "127.0.0.1:1")
		if !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("AddVoter: got %v, want ErrInvalidInput", err)
		}
		if got := tn.node.Members(); len(got) != 1 {
			t.Errorf("Members: got %v, want cp1 alone", got)
		}
	})
	t.Run("unreachable and misnamed nodes", func(t *testing.T) {
		cfg := testConfig(t, "cp1", t.TempDir())
		fast(&cfg)
		cfg.BindAddr = freeAddrs(t, 1)[0]
		tn := startNode(t, cfg)
		tn.waitLeader()
		eventually(t, "leadership", tn.node.IsLeader)
		joiner := startJoiner(t, "cp2", testSecret)
		if err := tn.node.AddVoter(ctx, "cp2", freeAddrs(t, 1)[0]); !errors.Is(err, cluster.ErrUnavailable) {
			t.Errorf("AddVoter of an address nobody listens on: got %v, want ErrUnavailable", err)
		}
		if err := tn.node.AddVoter(ctx, "cp3", joiner.node.Addr()); !errors.Is(err, cluster.ErrInvalidInput) {
			t.Errorf("AddVoter under the wrong id: got %v, want ErrInvalidInput", err)
		}
		if got := tn.node.Members(); len(got) != 1 {
			t.Errorf("Members: got %v, want cp1 alone", got)
		}
		if _, err := tn.apply(createTenantCmd("acme", "")); err != nil {
			t.Errorf("Apply after refused AddVoters: %v", err)
		}
	})
}
