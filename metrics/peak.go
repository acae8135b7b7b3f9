package metrics

import (
	"sync/atomic"
	"time"
)

// peakSeconds and peakMinutes are the lengths of a PeakRate's rings: the
// last minute per second, the last hour per minute.
const (
	peakSeconds = 60
	peakMinutes = 60
)

// PeakRate counts events per second and answers the busiest second of the
// last minute and of the last hour. Recording is one atomic load and one
// atomic add (plus, once per second, a compare-and-swap that starts the
// new second and folds the second it overwrites into the per-minute ring);
// there is no lock and no background goroutine. The zero value is ready.
//
// Each slot packs a period number (unix second, or unix minute) in its
// high 32 bits and a count in its low 32: a slot whose period is not the
// current one is stale and reads as 0.
type PeakRate struct {
	seconds [peakSeconds]atomic.Uint64
	minutes [peakMinutes]atomic.Uint64 // the busiest second of each minute
}

func pack(period uint32, n uint32) uint64 { return uint64(period)<<32 | uint64(n) }

func unpack(v uint64) (period uint32, n uint32) { return uint32(v >> 32), uint32(v) }

// Add counts one event at now. It is safe for concurrent use.
func (p *PeakRate) Add(now time.Time) {
	sec := uint32(now.Unix())
	slot := &p.seconds[sec%peakSeconds]
	for {
		old := slot.Load()
		switch s, _ := unpack(old); {
		case s == sec:
			slot.Add(1)
			return
		case s > sec: // a caller stalled for a minute since reading the clock
			return
		}
		// The slot holds a second at least a minute old: start this one,
		// and keep the old second's count in its minute.
		if slot.CompareAndSwap(old, pack(sec, 1)) {
			if s, n := unpack(old); n > 0 {
				p.foldMinute(s/60, n)
			}
			return
		}
	}
}

// foldMinute raises minute's busiest second to n.
func (p *PeakRate) foldMinute(minute, n uint32) {
	slot := &p.minutes[minute%peakMinutes]
	for {
		old := slot.Load()
		m, have := unpack(old)
		switch {
		case m == minute && have >= n, m > minute:
			return
		case m < minute:
			have = 0
		}
		if slot.CompareAndSwap(old, pack(minute, max(have, n))) {
			return
		}
	}
}

// Peaks returns the most events counted in one second over the last
// minute and over the last hour, the current second included (so far).
// The hour is counted in whole minutes: it reaches back up to 60 minutes
// before the current one. It takes no lock; a concurrent Add may or may
// not be seen.
func (p *PeakRate) Peaks(now time.Time) (minute, hour uint64) {
	sec := uint32(now.Unix())
	for i := range p.seconds {
		s, n := unpack(p.seconds[i].Load())
		if n == 0 || s > sec || sec-s >= peakSeconds*peakMinutes {
			continue
		}
		if sec-s < peakSeconds {
			minute = max(minute, uint64(n))
		}
		hour = max(hour, uint64(n))
	}
	cur := sec / 60
	for i := range p.minutes {
		m, n := unpack(p.minutes[i].Load())
		if m <= cur && cur-m <= peakMinutes {
			hour = max(hour, uint64(n))
		}
	}
	return minute, hour
}
