package raft

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestConfig_Validate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeID, c.Dir = "cp1", "/var/lib/pbe/raft"
		return c
	}
	tcp := func(c Config) Config {
		c.BindAddr = "127.0.0.1:7000"
		c.ClusterSecret = testSecret
		c.Peers = []Peer{{ID: "cp1", Addr: "127.0.0.1:7000"}, {ID: "cp2", Addr: "127.0.0.1:7001"}}
		return c
	}
	tests := []struct {
		name  string
		edit  func(c Config) Config
		field string // "" = valid
	}{
		{"defaults with id and dir", func(c Config) Config { return c }, ""},
		{"in-memory with self as the only peer", func(c Config) Config { c.Peers = []Peer{{ID: "cp1", Addr: "x"}}; return c }, ""},
		{"tcp cluster", tcp, ""},
		{"unspecified bind with advertise", func(c Config) Config {
			c = tcp(c)
			c.BindAddr, c.AdvertiseAddr = "0.0.0.0:7000", "10.0.0.1:7000"
			return c
		}, ""},
		{"join", func(c Config) Config { c.BindAddr, c.Join, c.ClusterSecret = "127.0.0.1:0", true, testSecret; return c }, ""},
		{"in-memory without a secret", func(c Config) Config { c.ClusterSecret = ""; return c }, ""},
		{"tcp without a secret", func(c Config) Config { c = tcp(c); c.ClusterSecret = ""; return c }, "ClusterSecret"},
		{"join without a secret", func(c Config) Config { c.BindAddr, c.Join = "127.0.0.1:0", true; return c }, "ClusterSecret"},
		{"secret too short", func(c Config) Config { c = tcp(c); c.ClusterSecret = "0123456789abcde"; return c }, "ClusterSecret"},
		{"no node id", func(c Config) Config { c.NodeID = ""; return c }, "NodeID"},
		{"node id with a space", func(c Config) Config { c.NodeID = "cp 1"; return c }, "NodeID"},
		{"no dir", func(c Config) Config { c.Dir = ""; return c }, "Dir"},
		{"bind without port", func(c Config) Config { c.BindAddr = "127.0.0.1"; return c }, "BindAddr"},
		{"bind with a bad port", func(c Config) Config { c.BindAddr = "127.0.0.1:http"; return c }, "BindAddr"},
		{"unspecified bind without advertise", func(c Config) Config { c.BindAddr = "0.0.0.0:7000"; return c }, "AdvertiseAddr"},
		{"empty bind host without advertise", func(c Config) Config { c.BindAddr = ":7000"; return c }, "AdvertiseAddr"},
		{"unspecified advertise", func(c Config) Config { c.BindAddr, c.AdvertiseAddr = "0.0.0.0:7000", "[::]:7000"; return c }, "AdvertiseAddr"},
		{"advertise port 0", func(c Config) Config { c.BindAddr, c.AdvertiseAddr = "0.0.0.0:0", "10.0.0.1:0"; return c }, "AdvertiseAddr"},
		{"advertise without bind", func(c Config) Config { c.AdvertiseAddr = "10.0.0.1:7000"; return c }, "AdvertiseAddr"},
		{"join in memory", func(c Config) Config { c.Join = true; return c }, "Join"},
		{"join with peers", func(c Config) Config { c = tcp(c); c.Join = true; return c }, "Peers"},
		{"peers without self", func(c Config) Config { c = tcp(c); c.Peers = c.Peers[1:]; return c }, "Peers"},
		{"duplicate peer id", func(c Config) Config { c = tcp(c); c.Peers[1].ID = "cp1"; return c }, "Peers"},
		{"duplicate peer addr", func(c Config) Config { c = tcp(c); c.Peers[1].Addr = c.Peers[0].Addr; return c }, "Peers"},
		{"peer without addr", func(c Config) Config { c = tcp(c); c.Peers[1].Addr = ""; return c }, "Peers"},
		{"several peers in memory", func(c Config) Config { c = tcp(c); c.BindAddr = ""; return c }, "Peers"},
		{"heartbeat too low", func(c Config) Config { c.HeartbeatTimeout = time.Millisecond; return c }, "HeartbeatTimeout"},
		{"election below heartbeat", func(c Config) Config { c.ElectionTimeout = c.HeartbeatTimeout / 2; return c }, "ElectionTimeout"},
		{"lease above heartbeat", func(c Config) Config { c.LeaderLeaseTimeout = c.HeartbeatTimeout * 2; return c }, "LeaderLeaseTimeout"},
		{"commit timeout zero", func(c Config) Config { c.CommitTimeout = 0; return c }, "CommitTimeout"},
		{"snapshot threshold zero", func(c Config) Config { c.SnapshotThreshold = 0; return c }, "SnapshotThreshold"},
		{"snapshot retain zero", func(c Config) Config { c.SnapshotRetain = 0; return c }, "SnapshotRetain"},
		{"log segment too small", func(c Config) Config { c.LogSegmentSize = 1024; return c }, "LogSegmentSize"},
		{"apply timeout zero", func(c Config) Config { c.ApplyTimeout = 0; return c }, "ApplyTimeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.edit(valid()).Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.field != "" && err == nil:
				t.Errorf("got nil, want an error naming %s", tc.field)
			case tc.field != "" && !strings.Contains(err.Error(), tc.field+":"):
				t.Errorf("got %q, want it to name %s", err, tc.field)
			}
		})
	}
}

func TestConfig_String(t *testing.T) {
	c := DefaultConfig()
	c.NodeID, c.ClusterSecret = "cp1", testSecret
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "raft", c)
	for name, out := range map[string]string{"String": c.String(), "%v": fmt.Sprintf("%v", c), "slog": buf.String()} {
		if strings.Contains(out, testSecret) || !strings.Contains(out, "ClusterSecret:REDACTED") || !strings.Contains(out, "NodeID:cp1") {
			t.Errorf("%s: got %q, want the config with ClusterSecret redacted", name, out)
		}
	}
}

func TestNew_RejectsPeerAddrMismatch(t *testing.T) {
	addrs := freeAddrs(t, 2)
	cfg := testConfig(t, "cp1", t.TempDir())
	cfg.BindAddr = addrs[0]
	cfg.Peers = []Peer{{ID: "cp1", Addr: addrs[1]}}
	tn := &testNode{t: t, cfg: cfg}
	err := tn.start()
	if err == nil {
		tn.stop()
		t.Fatal("New: got nil, want an error")
	}
	if !strings.Contains(err.Error(), "Peers:") {
		t.Errorf("New: got %v, want an error naming Peers", err)
	}
	// The failed start released the port and the log: a correct config
	// starts in the same directory.
	tn.cfg.Peers = []Peer{{ID: "cp1", Addr: addrs[0]}}
	if err := tn.start(); err != nil {
		t.Fatalf("start after a failed start: %v", err)
	}
	tn.stop()
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	named := l.Named("wal").With("segment", 3)
	named.Info("chatty info")
	named.Warn("a warning", "peer", "cp2")
	named.Error("an error")
	out := buf.String()
	if strings.Contains(out, "chatty info") {
		t.Errorf("raft's Info was logged at slog Info: %q", out)
	}
	for _, want := range []string{"level=WARN msg=\"a warning\" logger=wal segment=3 peer=cp2", "level=ERROR msg=\"an error\""} {
		if !strings.Contains(out, want) {
			t.Errorf("logs %q do not contain %q", out, want)
		}
	}
	if l.IsInfo() || !l.IsWarn() || l.GetLevel() != hclog.Warn {
		t.Errorf("levels: IsInfo %v, IsWarn %v, GetLevel %v; want false, true, warn", l.IsInfo(), l.IsWarn(), l.GetLevel())
	}
	if got := named.Named("seg").Name(); got != "wal.seg" {
		t.Errorf("Name: got %q, want wal.seg", got)
	}
}
