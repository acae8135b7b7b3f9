package hooks

import (
	"errors"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/dop251/goja"
)

// errMemoryLimit interrupts a run that has allocated Config.MemoryPerRun.
var errMemoryLimit = errors.New("memory limit exceeded")

// Go keeps no account of what one goroutine allocates, so a run's
// allocation is estimated: the process's allocations over an interval,
// times the share of the process's CPU time the run's thread used in it.
// A run that computes is charged about what it allocates; one that waits
// (on the network, on sleep) is charged nothing for the wait. Allocating
// costs CPU on the allocating thread, so a hook cannot allocate much
// without being charged for it, though others' allocations in the same
// interval are charged to it in proportion too (the estimate errs high
// on a busy node).

// memSampleInterval is how often running hooks' allocations are sampled.
const memSampleInterval = 10 * time.Millisecond

// memIdleLinger is how long the sampler stays after the last run ends, so
// that a stream of short runs does not start one goroutine each.
const memIdleLinger = time.Second

// A memRun is the allocation account of one run (nested runs share it).
type memRun struct {
	vm    *goja.Runtime
	tid   int
	limit int64

	// Guarded by memGuard.mu.
	allocLast  uint64
	procLast   time.Duration
	threadLast time.Duration
	charged    int64
	over       bool
}

// memGuard samples every run in progress in the process.
var memGuard struct {
	mu      sync.Mutex
	runs    map[*memRun]struct{}
	running bool
	// allocs and proc are the process's figures at the last sample: a
	// run's account starts from them, so starting one reads neither.
	allocs uint64
	proc   time.Duration
}

// heapAllocs is the process's cumulative heap allocation in bytes.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// startMemRun opens the account of a run on thread tid (locked to its
// goroutine), interrupting vm once limit bytes are charged to it.
func startMemRun(vm *goja.Runtime, tid int, limit int64) *memRun {
	r := &memRun{vm: vm, tid: tid, limit: limit, threadLast: threadCPU(tid)}
	memGuard.mu.Lock()
	defer memGuard.mu.Unlock()
	if memGuard.runs == nil {
		memGuard.runs = map[*memRun]struct{}{}
	}
	if !memGuard.running {
		memGuard.running = true
		memGuard.allocs, memGuard.proc = heapAllocs(), processCPU()
		go sampleMemory()
	}
	// The account starts from the last sample, at most memSampleInterval
	// old: the run's share of that window's CPU time is a little smaller
	// than of its own, its share of the window's allocations as much.
	r.allocLast, r.procLast = memGuard.allocs, memGuard.proc
	memGuard.runs[r] = struct{}{}
	return r
}

// finish charges the run's last interval, closes its account and returns
// what was charged in all; no interrupt arrives after it returns.
func (r *memRun) finish() int64 {
	allocs, proc := heapAllocs(), processCPU()
	memGuard.mu.Lock()
	defer memGuard.mu.Unlock()
	r.charge(allocs, proc)
	delete(memGuard.runs, r)
	r.vm = nil
	return r.charged
}

// charge adds the run's share of what the process allocated since the
// last charge. Call with memGuard.mu held.
func (r *memRun) charge(allocs uint64, proc time.Duration) {
	thread := threadCPU(r.tid)
	dAlloc, dProc, dThread := allocs-r.allocLast, proc-r.procLast, thread-r.threadLast
	r.allocLast, r.procLast, r.threadLast = allocs, proc, thread
	if dProc <= 0 || dThread <= 0 {
		return
	}
	share := min(float64(dThread)/float64(dProc), 1)
	r.charged += int64(float64(dAlloc) * share)
	if r.charged >= r.limit && !r.over && r.vm != nil {
		r.over = true
		r.vm.Interrupt(errMemoryLimit)
	}
}

// sampleMemory charges every run in progress each memSampleInterval; it
// ends once no run has been in progress for memIdleLinger.
func sampleMemory() {
	t := time.NewTicker(memSampleInterval)
	defer t.Stop()
	idleSince := time.Time{}
	for now := range t.C {
		allocs, proc := heapAllocs(), processCPU()
		memGuard.mu.Lock()
		memGuard.allocs, memGuard.proc = allocs, proc
		for r := range memGuard.runs {
			r.charge(allocs, proc)
		}
		if len(memGuard.runs) > 0 {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = now
		} else if now.Sub(idleSince) >= memIdleLinger {
			memGuard.running = false
			memGuard.mu.Unlock()
			return
		}
		memGuard.mu.Unlock()
	}
}
