package raft

import (
	"testing"
)

func TestNode_LeadershipChanges(t *testing.T) {
	t.Run("a leader's state waits for the first read, then Stop sends false and closes", func(t *testing.T) {
		tn := startNode(t, testConfig(t, "cp1", t.TempDir()))
		tn.waitLeader()
		eventually(t, "leadership", tn.node.IsLeader)
		ch := tn.node.LeadershipChanges()
		if v := recvLeadership(t, tn); !v {
			t.Fatalf("first value: got false, want true")
		}
		select {
		case v := <-ch:
			t.Fatalf("second value without a change: got %v, want nothing", v)
		default:
		}
		tn.stop()
		if v, ok := <-ch; !ok || v {
			t.Errorf("after Stop: got %v (open %v), want false", v, ok)
		}
		if _, ok := <-ch; ok {
			t.Errorf("after Stop: channel still open")
		}
	})
	t.Run("a node that never leads sends nothing and is closed by Stop", func(t *testing.T) {
		cfg := testConfig(t, "cp2", t.TempDir())
		cfg.BindAddr, cfg.Join = freeAddrs(t, 1)[0], true
		tn := startNode(t, cfg)
		ch := tn.node.LeadershipChanges()
		select {
		case v := <-ch:
			t.Fatalf("got %v from a node waiting to join, want nothing", v)
		default:
		}
		tn.stop()
		if v, ok := <-ch; ok {
			t.Errorf("after Stop: got %v, want a closed channel", v)
		}
	})
	t.Run("publishing never blocks and keeps the latest value", func(t *testing.T) {
		n := &Node{leaderCh: make(chan bool, 1)}
		for _, v := range []bool{true, false, true, false} {
			n.publishLeadership(v)
		}
		if v := <-n.leaderCh; v {
			t.Errorf("got %v, want the latest value, false", v)
		}
	})
}
