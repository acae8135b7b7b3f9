package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCluster_MetricsCountLeaderChanges kills the leader of a 3-node
// control plane and reads the survivors' metrics: each counts the change
// and one of them leads.
func TestCluster_MetricsCountLeaderChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes")
	}
	c := startCluster(t, 3)
	scrape := func(i int) string {
		s := &testServer{t: t, port: c.http[i], client: loopbackClient(c.http[i])}
		r := s.do("GET", "http://localhost:"+c.http[i]+"/metrics", nil, "Authorization", "Bearer "+testAdminToken)
		mustStatus(t, r, http.StatusOK)
		return string(r.body)
	}
	for i := range c.procs {
		if m := scrape(i); !strings.Contains(m, "pbe_raft_leader_changes_total 0\n") || !strings.Contains(m, "pbe_raft_leader_known 1\n") {
			t.Fatalf("%s before any change: want pbe_raft_leader_changes_total 0 and a known leader", c.ids[i])
		}
	}
	victim := c.leader()
	_ = c.procs[victim].cmd.Process.Kill()
	<-c.procs[victim].exited
	c.procs[victim] = nil
	leader := c.leader()
	for i := range c.procs {
		if c.procs[i] == nil {
			continue
		}
		// A survivor samples the leader every 100 ms: wait for it, bounded.
		var m string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if m = scrape(i); strings.Contains(m, "pbe_raft_leader_changes_total 1\n") || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(m, "pbe_raft_leader_changes_total 1\n") {
			t.Errorf("%s: pbe_raft_leader_changes_total is not 1 after the leader was killed", c.ids[i])
		}
		wantLeader := "pbe_raft_is_leader 0\n"
		if i == leader {
			wantLeader = "pbe_raft_is_leader 1\n"
		}
		if !strings.Contains(m, wantLeader) {
			t.Errorf("%s: want %q", c.ids[i], strings.TrimSpace(wantLeader))
		}
	}
}
