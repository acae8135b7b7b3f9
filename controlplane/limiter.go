package controlplane

import (
	"sync"
	"time"
)

// Failed-login limits: after this many failures within the window, further
// attempts for that account (or from that address) are refused until the
// oldest failure leaves the window.
const (
	maxFailuresPerAccount = 5
	maxFailuresPerIP      = 20
	failureWindow         = 15 * time.Minute
)

// attemptLimiter counts recent failures per key ("account:…", "ip:…").
// It lives on the node that answers logins (the leader); a new leader
// starts counting afresh.
type attemptLimiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
	now      func() time.Time
}

func newAttemptLimiter() *attemptLimiter {
	return &attemptLimiter{failures: map[string][]time.Time{}, now: time.Now}
}

// blocked reports whether key is at its limit, and until when.
func (l *attemptLimiter) blocked(key string, limit int) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.recent(key)
	if len(ts) < limit {
		return false, time.Time{}
	}
	return true, ts[len(ts)-limit].Add(failureWindow)
}

// fail records a failure of key.
func (l *attemptLimiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures[key] = append(l.recent(key), l.now())
	if len(l.failures) > 100_000 {
		for k := range l.failures {
			if len(l.recent(k)) == 0 {
				delete(l.failures, k)
			}
		}
	}
}

// reset forgets key's failures (after a successful login).
func (l *attemptLimiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// recent drops failures older than the window and returns the rest.
func (l *attemptLimiter) recent(key string) []time.Time {
	ts := l.failures[key]
	cut := l.now().Add(-failureWindow)
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.failures, key)
	} else {
		l.failures[key] = ts
	}
	return ts
}
