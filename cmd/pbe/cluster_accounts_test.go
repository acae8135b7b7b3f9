package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/email/smtptest"
)

// clusterMail finds the newest e-mail to addr written by any node of the
// cluster (without --smtp, each node writes the mail it sends to
// {dir}/mail/).
func (c *cpCluster) clusterMail(t *testing.T, addr, marker string) smtptest.Received {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, dir := range c.dirs {
			files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				m := smtptest.Parse(raw)
				if strings.Contains(string(raw), addr) && strings.Contains(m.Text, marker) {
					return m
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no e-mail to %s with %q in any node's mail directory", addr, marker)
	return smtptest.Received{}
}

// TestCluster_CustomerSessionsOnEveryNode signs a customer up through a
// follower, and checks that their access token works on every node,
// survives the leader's death (the signing key is cluster state), and
// stops working everywhere once they log out.
func TestCluster_CustomerSessionsOnEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	c := startCluster(t, 3)
	leader := c.leader()
	follower := (leader + 1) % 3
	base := func(i int) string { return "http://127.0.0.1:" + c.http[i] }
	call := func(i int, method, path, token string, body any) response {
		hc := loopbackClient(c.http[i])
		s := &testServer{t: t, client: hc}
		if token == "" {
			return s.do(method, base(i)+path, body)
		}
		return s.do(method, base(i)+path, body, "Authorization", "Bearer "+token)
	}
	mustStatus(t, call(follower, "POST", "/api/cp/auth/signup", "", map[string]string{"email": "alice@example.com", "password": "alice-password"}), http.StatusAccepted)
	m := c.clusterMail(t, "alice@example.com", "/api/cp/auth/verify?token=")
	link, _ := url.Parse(linkIn(t, m.Text, "/api/cp/auth/verify?token="))
	mustStatus(t, call((leader+2)%3, "GET", link.RequestURI(), "", nil), http.StatusOK)

	r := call(follower, "POST", "/api/cp/auth/login", "", map[string]string{"email": "alice@example.com", "password": "alice-password"})
	mustStatus(t, r, http.StatusOK)
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	r.json(t, &pair)
	for i := range 3 {
		waitStatus(t, func() response { return call(i, "GET", "/api/cp/me", pair.AccessToken, nil) }, http.StatusOK)
	}
	mustStatus(t, call(follower, "POST", "/api/cp/tenants", pair.AccessToken, map[string]string{"id": "alice-one"}), http.StatusCreated)

	// The leader dies; the token still works on the others, and a new
	// leader takes writes with it.
	_ = c.procs[leader].cmd.Process.Kill()
	<-c.procs[leader].exited
	c.procs[leader] = nil
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	for _, i := range survivors {
		waitStatus(t, func() response { return call(i, "GET", "/api/cp/tenants/alice-one", pair.AccessToken, nil) }, http.StatusOK)
	}
	waitStatus(t, func() response { return call(survivors[0], "POST", "/api/cp/auth/logout", pair.AccessToken, nil) }, http.StatusNoContent)
	for _, i := range survivors {
		waitStatus(t, func() response { return call(i, "GET", "/api/cp/me", pair.AccessToken, nil) }, http.StatusUnauthorized)
	}
}

// waitStatus retries get until it answers want (a node may still be
// applying the entry, or electing a leader), for up to 20 seconds.
func waitStatus(t *testing.T, get func() response, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := get()
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d %s, want %d", r.status, r.body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
