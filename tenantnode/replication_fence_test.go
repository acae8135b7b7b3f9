package tenantnode

import (
	"context"
	"testing"
	"time"
)

func TestFence_CloseRefusesNewWritesAndWaitsForThoseUnderWay(t *testing.T) {
	holds := true
	f := newFence(func() bool { return holds })
	if !f.begin() {
		t.Fatal("a write was refused before close")
	}
	closed := make(chan error, 1)
	go func() { closed <- f.close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) while a write was under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	if f.begin() {
		t.Fatal("a write was admitted after close began")
	}
	f.end()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	g := newFence(func() bool { return true })
	g.begin()
	if err := g.close(ctx); err == nil {
		t.Fatal("close with a write that never ends returned no error")
	}

	holds = false
	if newFence(func() bool { return holds }).begin() {
		t.Fatal("a write was admitted although the node does not hold the tenant")
	}
}
