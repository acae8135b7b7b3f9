package hooks

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadID is the OS thread the calling goroutine runs on (it must be
// locked to it).
func threadID() int { return unix.Gettid() }

// threadCPU is the CPU time thread tid has used: its per-thread CPU clock
// (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) in the kernel), readable for
// any thread of this process.
func threadCPU(tid int) time.Duration {
	var ts unix.Timespec
	clock := int32(^uint32(tid)<<3 | 6)
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// processCPU is the CPU time all threads of the process have used.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
