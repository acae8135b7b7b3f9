package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/internal/s3test"
)

// fleet is a control plane, tenant nodes and a gateway, each its own pbe
// process, sharing a real S3-compatible store (versitygw) on loopback.
type fleet struct {
	t        *testing.T
	s3       *s3test.Server
	objects  string
	cp       *proc
	cpAddr   string
	nodes    map[string]*proc
	nodeDir  map[string]string
	nodePort map[string]string
	gw       *proc
	gwPort   string
	api      *controlplane.HTTPClient
	lease    time.Duration
}

// fleetLease is the lease the fleet's control plane grants: short, so
// failovers happen within a test.
const fleetLease = 3 * time.Second

var fleetEnv = []string{"PBE_CLUSTER_SECRET=" + testClusterSecret, "PBE_ADMIN_TOKEN=" + testAdminToken}

func startFleet(t *testing.T, nodes ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, s3: s3test.Start(t), nodes: map[string]*proc{}, nodeDir: map[string]string{}, nodePort: map[string]string{}, lease: fleetLease}
	f.objects = f.s3.URL(t, "pbe")
	cpPort, raft := freePort(t), "127.0.0.1:"+freePort(t)
	f.cpAddr = "127.0.0.1:" + cpPort
	f.cp = launchProc(t, t.TempDir(), cpPort, []string{"--mode", "control-plane", "--node-id", "cp-1", "--raft-bind", raft,
		"--raft-peers", "cp-1=" + raft, "--objects", f.objects, "--lease", fleetLease.String()}, fleetEnv)
	f.cp.waitReady()
	f.api = controlplane.NewHTTPClient("http://"+f.cpAddr, testAdminToken)
	for _, id := range nodes {
		f.startNode(id)
	}
	f.gwPort = freePort(t)
	f.gw = launchProc(t, t.TempDir(), f.gwPort, []string{"--mode", "gateway", "--control-plane", f.cpAddr, "--domain", "localhost"}, fleetEnv)
	f.gw.waitReady()
	return f
}

// startNode starts (or restarts, on its old data directory) tenant node id.
func (f *fleet) startNode(id string) *proc {
	f.t.Helper()
	if f.nodeDir[id] == "" {
		f.nodeDir[id], f.nodePort[id] = f.t.TempDir(), freePort(f.t)
	}
	p := launchProc(f.t, f.nodeDir[id], f.nodePort[id], []string{"--mode", "tenant-node", "--node-id", id,
		"--control-plane", f.cpAddr, "--objects", f.objects, "--replication-interval", "100ms", "--domain", "localhost"}, fleetEnv)
	p.waitReady()
	f.nodes[id] = p
	return p
}

// gateway is a test client that talks to tenants through the gateway.
func (f *fleet) gateway() *testServer {
	return &testServer{t: f.t, port: f.gwPort, token: testAdminToken, client: loopbackClient(f.gwPort)}
}

// owner returns the node that serves tenant id now.
func (f *fleet) owner(id string) string {
	f.t.Helper()
	tn, err := f.api.GetTenantStrong(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return tn.Node
}

// createTenant creates a tenant with an admin and a posts collection.
func (f *fleet) createTenant(id, durability string) {
	f.t.Helper()
	_, err := f.api.CreateTenant(context.Background(), controlplane.CreateTenantInput{
		ID: id, Durability: clusterDurability(durability),
		Admin: &controlplane.Admin{Email: "admin@" + id + ".test", Password: "password-" + id},
	})
	if err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
	g := f.gateway()
	g.createPostsCollection(id, g.superuserToken(id))
}

func TestFleet_Smoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	f := startFleet(t, "tn-1", "tn-2")
	f.createTenant("acme", "async")
	g := f.gateway()
	g.createPost("acme", "through the gateway")
	if got := g.postTitles("acme"); len(got) != 1 || got[0] != "through the gateway" {
		t.Fatalf("got %v", got)
	}
	mustStatus(t, g.do("GET", g.tenantURL("nosuch", "/api/health"), nil), http.StatusNotFound)
	views, err := f.api.Nodes(context.Background())
	if err != nil || len(views) != 2 {
		t.Fatalf("nodes: %+v, %v", views, err)
	}
	for _, v := range views {
		if !v.Alive || v.State != "active" {
			t.Fatalf("node %s: %+v", v.ID, v)
		}
	}
	_ = strings.Contains
	_ = fmt.Sprint
}

func clusterDurability(s string) cluster.Durability { return cluster.Durability(s) }
