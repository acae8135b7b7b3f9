package health

import (
	"context"
	"fmt"
	"syscall"
)

// FreeBytes returns the space available to unprivileged users on the
// volume that holds path.
func FreeBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// LowDisk returns the error that reports free space below the minimum, or
// nil when free is at least minFree.
func LowDisk(free, minFree uint64) error {
	if free >= minFree {
		return nil
	}
	return fmt.Errorf("free disk %d MiB is below the minimum %d MiB", free>>20, minFree>>20)
}

// MinFreeDisk returns a check that fails while the volume holding dir has
// less than minFree bytes available, measuring on every run with measure
// (nil: FreeBytes).
func MinFreeDisk(dir string, minFree uint64, measure func(path string) (uint64, error)) CheckFunc {
	if measure == nil {
		measure = FreeBytes
	}
	return func(context.Context) error {
		free, err := measure(dir)
		if err != nil {
			return fmt.Errorf("measure free disk under %s: %w", dir, err)
		}
		return LowDisk(free, minFree)
	}
}
