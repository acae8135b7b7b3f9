package controlplane

import (
	"testing"

	"github.com/pbe/pbe/metrics"
)

func TestP95(t *testing.T) {
	n := len(metrics.LatencyBuckets)
	cum := func(perBucket map[int]uint64) []uint64 {
		out := make([]uint64, n+1)
		var total uint64
		for i := 0; i <= n; i++ {
			total += perBucket[i]
			out[i] = total
		}
		out[n] = total
		return out
	}
	// 100 requests: 90 under 1 ms, 10 between 10 ms and 25 ms.
	after := cum(map[int]uint64{0: 90, 4: 10})
	got := p95(nil, after)
	if got == nil || *got <= 0.010 || *got > 0.025 {
		t.Fatalf("p95 %v, want within (10 ms, 25 ms]", got)
	}
	// The same, as the difference from an earlier reading.
	before := cum(map[int]uint64{0: 5})
	after = cum(map[int]uint64{0: 95, 4: 10})
	if got := p95(before, after); got == nil || *got <= 0.010 || *got > 0.025 {
		t.Fatalf("p95 of the difference %v", got)
	}
	if p95(after, after) != nil {
		t.Fatal("no requests in the window, yet a p95")
	}
}
