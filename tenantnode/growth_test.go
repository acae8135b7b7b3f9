package tenantnode

import (
	"testing"
	"time"
)

func TestGrowthRing_Rate(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	var g growthRing
	if got := g.rate(start, 100); got != 0 {
		t.Fatalf("no samples: got %v, want 0", got)
	}
	g.add(at(0), 1000)
	if got := g.rate(at(0), 5000); got != 0 {
		t.Errorf("a sample of no age: got %v, want 0", got)
	}
	// 1000 bytes in 30 minutes: 2000 bytes per hour.
	g.add(at(30*time.Second), 1500) // too close to the last one: not kept
	if got := g.rate(at(30*time.Minute), 2000); got != 2000 {
		t.Errorf("since activation: got %v, want 2000", got)
	}
	for m := 1; m <= 90; m++ {
		g.add(at(time.Duration(m)*time.Minute), 1000+int64(m)*100)
	}
	// The base is the newest sample an hour old: minute 30, 4000 bytes.
	if got := g.rate(at(90*time.Minute), 10000); got != 6000 {
		t.Errorf("over the last hour: got %v, want 6000", got)
	}
	if got := g.rate(at(90*time.Minute), 1000); got != -3000 {
		t.Errorf("after deleting data: got %v, want -3000", got)
	}
	if n := len(g.samples); n > int(growthWindow/growthSampleSpacing)+1 {
		t.Errorf("kept %d samples, want at most %d", n, int(growthWindow/growthSampleSpacing)+1)
	}
}
