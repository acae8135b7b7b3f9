package tenantnode

import (
	"sync"
	"time"
)

// A tenant's storage growth rate is derived from periodic measures of its
// database and file bytes, never from requests: the usage loop measures
// every growthMeasureInterval and keeps one sample per growthSampleSpacing
// over the last growthWindow.
const (
	// growthWindow is the span the growth rate is computed over.
	growthWindow = time.Hour
	// growthSampleSpacing is how far apart kept samples are; the rate's
	// base is between growthWindow and growthWindow+growthSampleSpacing old.
	growthSampleSpacing = time.Minute
	// growthMeasureInterval is how often the usage loop measures the
	// databases for the growth rate (more often while a storage quota
	// applies: storageRefreshInterval).
	growthMeasureInterval = 5 * time.Second
	// growthMinSpan is the shortest span a rate is computed over: a tenant
	// activated a moment ago has no growth rate yet.
	growthMinSpan = time.Second
)

type sizeSample struct {
	at    time.Time
	bytes int64
}

// growthRing holds a tenant's storage samples since its activation,
// oldest first. It is safe for concurrent use (the usage loop adds,
// heartbeats and scrapes read).
type growthRing struct {
	mu      sync.Mutex
	samples []sizeSample
}

// add records the tenant's storage bytes at now; a sample closer than
// growthSampleSpacing to the last kept one is not kept (the rate reads the
// current figure anyway).
func (g *growthRing) add(now time.Time, bytes int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.samples); n > 0 && now.Sub(g.samples[n-1].at) < growthSampleSpacing {
		return
	}
	g.samples = append(g.samples, sizeSample{at: now, bytes: bytes})
	for len(g.samples) > 1 && now.Sub(g.samples[1].at) >= growthWindow {
		g.samples = g.samples[1:]
	}
}

// rate returns the growth in bytes per hour from the oldest sample of the
// window to current, the tenant's bytes at now as last measured; 0 until
// a sample is growthMinSpan old. It may be negative (data deleted).
func (g *growthRing) rate(now time.Time, current int64) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := 0
	for i+1 < len(g.samples) && now.Sub(g.samples[i+1].at) >= growthWindow {
		i++
	}
	if i >= len(g.samples) {
		return 0
	}
	base := g.samples[i]
	span := now.Sub(base.at)
	if span < growthMinSpan {
		return 0
	}
	return float64(current-base.bytes) / span.Hours()
}
