//go:build !linux

package hooks

import (
	"sync/atomic"
	"time"
)

var threadSeq atomic.Int64

// threadID is a unique id per run where the OS offers no thread id; nested
// runs then take a runtime of their own.
func threadID() int { return int(threadSeq.Add(1)) }

var started = time.Now()

// threadCPU falls back to wall-clock time where per-thread CPU clocks are
// not available.
func threadCPU(int) time.Duration { return time.Since(started) }

// processCPU is wall-clock time too, so that a run is charged everything
// the process allocates while it runs.
func processCPU() time.Duration { return time.Since(started) }
