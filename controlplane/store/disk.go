package store

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/health"
)

// DiskConfig configures the store's disk manager.
type DiskConfig struct {
	// Dir is a path on the data volume whose free space is watched.
	Dir string
	// MinFreeBytes is the free space below which the store reports low disk.
	MinFreeBytes uint64
	// CheckInterval is how often free space is measured.
	CheckInterval time.Duration
	// GCInterval is how often Badger's value-log garbage collection runs.
	GCInterval time.Duration
	// GCDiscardRatio is the share of stale data that makes a value-log file
	// worth rewriting.
	GCDiscardRatio float64
	// FreeBytes measures the free space under a path; nil uses
	// health.FreeBytes (statfs).
	FreeBytes func(path string) (uint64, error)
}

// Disk manager defaults.
const (
	DefaultMinFreeBytes   = 256 << 20
	DefaultCheckInterval  = 5 * time.Second
	DefaultGCInterval     = 10 * time.Minute
	DefaultGCDiscardRatio = 0.5
)

// DefaultDiskConfig returns the defaults for dir.
func DefaultDiskConfig(dir string) DiskConfig {
	return DiskConfig{
		Dir:            dir,
		MinFreeBytes:   DefaultMinFreeBytes,
		CheckInterval:  DefaultCheckInterval,
		GCInterval:     DefaultGCInterval,
		GCDiscardRatio: DefaultGCDiscardRatio,
	}
}

// DiskManager watches the data volume's free space and runs Badger's
// value-log GC on a schedule. Low disk is reported, not acted on: the
// control plane refuses writes (507) and fails readiness while it lasts,
// and recovers by itself when space returns.
type DiskManager struct {
	cfg    DiskConfig
	store  *Store
	logger *slog.Logger
	low    atomic.Bool
	free   atomic.Uint64
}

// NewDiskManager returns a disk manager for s; Run starts it.
func (s *Store) NewDiskManager(cfg DiskConfig) *DiskManager {
	if cfg.FreeBytes == nil {
		cfg.FreeBytes = health.FreeBytes
	}
	d := &DiskManager{cfg: cfg, store: s, logger: s.logger.With("subsystem", "disk")}
	d.check()
	return d
}

// LowDisk reports whether free space was below MinFreeBytes at the last check.
func (d *DiskManager) LowDisk() bool { return d.low.Load() }

// Check returns an error naming the free space when it is low.
func (d *DiskManager) Check(context.Context) error {
	if d.low.Load() {
		return health.LowDisk(d.free.Load(), d.cfg.MinFreeBytes)
	}
	return nil
}

// Run checks free space and runs value-log GC until ctx ends.
func (d *DiskManager) Run(ctx context.Context) {
	check := time.NewTicker(d.cfg.CheckInterval)
	defer check.Stop()
	gc := time.NewTicker(d.cfg.GCInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			d.check()
		case <-gc.C:
			d.store.runValueLogGC(d.cfg.GCDiscardRatio, d.logger)
		}
	}
}

func (d *DiskManager) check() {
	free, err := d.cfg.FreeBytes(d.cfg.Dir)
	if err != nil {
		d.logger.Warn("measure free disk", "dir", d.cfg.Dir, "error", err)
		return
	}
	d.free.Store(free)
	low := free < d.cfg.MinFreeBytes
	if d.low.Swap(low) != low {
		if low {
			d.logger.Error("free disk below minimum: refusing writes", "free_mib", free>>20, "min_mib", d.cfg.MinFreeBytes>>20)
		} else {
			d.logger.Info("free disk back above minimum: accepting writes", "free_mib", free>>20)
		}
	}
}

// gcStats counts the store's value-log GC runs.
type gcStats struct {
	runs     atomic.Uint64
	rewrites atomic.Uint64
	total    atomic.Int64 // nanoseconds
}

// GCStats is what the store's value-log GC has done since it was opened.
type GCStats struct {
	// Runs counts the GC runs (each rewrites files until none is worth
	// it); Rewrites the value-log files rewritten; Total their summed
	// duration.
	Runs, Rewrites uint64
	Total          time.Duration
}

// ValueLogGCStats returns the value-log GC's counts. No lock.
func (s *Store) ValueLogGCStats() GCStats {
	return GCStats{Runs: s.gc.runs.Load(), Rewrites: s.gc.rewrites.Load(), Total: time.Duration(s.gc.total.Load())}
}

// runValueLogGC rewrites value-log files until none is worth rewriting.
func (s *Store) runValueLogGC(ratio float64, logger *slog.Logger) {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	if s.closed {
		return
	}
	start := time.Now()
	n := 0
	defer func() {
		s.gc.total.Add(int64(time.Since(start)))
		s.gc.rewrites.Add(uint64(n))
		s.gc.runs.Add(1)
	}()
	for {
		err := s.db.RunValueLogGC(ratio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			break
		}
		if err != nil {
			logger.Warn("value-log gc", "error", err)
			break
		}
		n++
	}
	logger.Debug("value-log gc done", "rewritten", n)
}
