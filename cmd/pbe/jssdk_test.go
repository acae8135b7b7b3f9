package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestJSSDK drives a tenant with the official PocketBase JS SDK (npm
// "pocketbase"), unchanged and pointed at http://{tenant}.localhost:port.
// It runs when Node.js and the test's npm packages are installed
// (.ci/run installs them).
func TestJSSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script, _ := filepath.Abs(filepath.Join("..", "..", "test", "jssdk", "sdk_test.mjs"))
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "pocketbase")); err != nil {
		t.Skip("run 'npm ci' in test/jssdk first")
	}
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	s.createTenant("acme")
	s.createTenant("bravo")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, s.port, "acme", "bravo", "admin@acme.test", "password-acme")
	out, err := cmd.CombinedOutput()
	t.Logf("sdk output:\n%s", out)
	if err != nil {
		t.Fatalf("JS SDK scenario failed: %v", err)
	}
}
