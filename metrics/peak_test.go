package metrics

import (
	"sync"
	"testing"
	"time"
)

func TestPeakRate_Peaks(t *testing.T) {
	start := time.Unix(1_800_000_000, 0) // a whole minute
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }
	var p PeakRate
	add := func(sec, n int) {
		for range n {
			p.Add(at(sec))
		}
	}
	check := func(name string, sec int, wantMinute, wantHour uint64) {
		t.Helper()
		if m, h := p.Peaks(at(sec)); m != wantMinute || h != wantHour {
			t.Errorf("%s: got minute %d hour %d, want %d and %d", name, m, h, wantMinute, wantHour)
		}
	}
	check("nothing counted", 0, 0, 0)
	add(0, 5)
	add(1, 3)
	check("same second", 0, 5, 5)
	check("next second", 1, 5, 5)
	check("a minute later", 60, 3, 5) // the minute is (now-60s, now]
	check("a second more", 61, 0, 5)
	add(60, 2) // reuses second 0's slot: second 0 moves to its minute
	add(70, 4)
	check("after the slot was reused", 100, 4, 5)
	check("still within the hour", 3599, 0, 5)
	check("over an hour later", 3600+61, 0, 4) // minute 0 and second 60 are out, second 70 is in
	check("two hours later", 7300, 0, 0)
}

func TestPeakRate_Concurrent(t *testing.T) {
	now := time.Unix(1_800_000_030, 0)
	var p PeakRate
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				p.Add(now)
			}
		}()
	}
	wg.Wait()
	if m, h := p.Peaks(now); m != 8000 || h != 8000 {
		t.Fatalf("got minute %d hour %d, want 8000 and 8000", m, h)
	}
}

func BenchmarkPeakRate_Add(b *testing.B) {
	var p PeakRate
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Add(time.Now())
		}
	})
}
