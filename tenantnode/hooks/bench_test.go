package hooks

import (
	"fmt"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
)

// percentile is the nearest-rank percentile of sorted durations.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

// BenchmarkHookRequest measures what one trivial record hook adds to a
// request: the same requests against the same tenant, first with no hook,
// then with a hook that only calls e.next(). Reported: p50 and p99 of each
// and the added p50.
func BenchmarkHookRequest(b *testing.B) {
	for _, kind := range []string{"view", "create"} {
		b.Run(kind, func(b *testing.B) {
			tn := newTenant(b, DefaultConfig())
			rec := core.NewRecord(mustCollection(b, tn.app, "posts"))
			rec.Set("title", "x")
			if err := tn.app.Save(rec); err != nil {
				b.Fatal(err)
			}
			method, path, body, hook := "GET", "/api/collections/posts/records/"+rec.Id, "", "onRecordViewRequest"
			if kind == "create" {
				method, path, body, hook = "POST", "/api/collections/posts/records", `{"title":"x"}`, "onRecordCreateRequest"
			}
			run := func(n int) []time.Duration {
				ds := make([]time.Duration, n)
				for i := range ds {
					start := time.Now()
					if status, out := tn.do(b, method, path, body); status != 200 {
						b.Fatalf("%d %s", status, out)
					}
					ds[i] = time.Since(start)
				}
				sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
				return ds
			}
			n := max(b.N, 500)
			run(100) // warm up
			b.ResetTimer()
			without := run(n)
			col := mustCollection(b, tn.app, hooksCollection)
			h := core.NewRecord(col)
			h.Set("name", "trivial.pb.js")
			h.Set("enabled", true)
			h.Set("code", hook+`((e) => { e.next() }, "posts")`)
			if err := tn.app.Save(h); err != nil {
				b.Fatal(err)
			}
			tn.pool.Reload()
			run(100)
			with := run(n)
			b.StopTimer()
			if hs := tn.hookStatus(b, "trivial.pb.js"); hs.Runs < int64(n) {
				b.Fatalf("the hook ran %d times for %d requests", hs.Runs, n)
			}
			p50a, p50b := percentile(without, 0.5), percentile(with, 0.5)
			b.ReportMetric(float64(p50a.Microseconds()), "p50-no-hook-µs")
			b.ReportMetric(float64(p50b.Microseconds()), "p50-hook-µs")
			b.ReportMetric(float64((p50b - p50a).Microseconds()), "added-p50-µs")
			b.ReportMetric(float64(percentile(with, 0.99).Microseconds()), "p99-hook-µs")
		})
	}
}

// BenchmarkHookMemory measures what hooks cost a tenant in memory: tenants
// with three hooks each, one request served by each (one runtime made),
// then every runtime in use at once (Runtimes of them), against the same
// tenants before their hooks were stored. Reported per tenant: heap and
// RSS.
func BenchmarkHookMemory(b *testing.B) {
	const tenants = 20
	cfg := DefaultConfig()
	var ts []*tenant
	for range tenants {
		tn := newTenant(b, cfg)
		// Warm the tenant's own caches first: the baseline is a tenant
		// that has served requests, without hooks.
		for _, r := range [][3]string{{"POST", "/api/collections/posts/records", `{"title":"x"}`}, {"GET", "/api/collections/posts/records", ""}, {"GET", "/api/hello/x", ""}} {
			tn.do(b, r[0], r[1], r[2])
		}
		ts = append(ts, tn)
	}
	heap0, rss0 := memNow()
	code := `
onRecordCreateRequest((e) => { e.record.set("title", e.record.get("title").trim()); e.next() }, "posts")
onRecordAfterUpdateSuccess((e) => { e.next() }, "posts")
routerAdd("GET", "/api/hello/{name}", (e) => e.json(200, { hello: e.request.pathValue("name") }))
cronAdd("nightly", "0 3 * * *", () => { console.log("nightly") })
`
	for _, tn := range ts {
		rec := core.NewRecord(mustCollection(b, tn.app, hooksCollection))
		rec.Set("name", "app.pb.js")
		rec.Set("enabled", true)
		rec.Set("code", code)
		if err := tn.app.Save(rec); err != nil {
			b.Fatal(err)
		}
		tn.pool.Reload()
		if status, _ := tn.do(b, "GET", "/api/hello/x", ""); status != 200 {
			b.Fatal(status)
		}
	}
	heap1, rss1 := memNow()
	// Every runtime of every tenant in use once.
	for _, tn := range ts {
		done := make(chan struct{})
		for range cfg.Runtimes {
			go func() {
				defer func() { done <- struct{}{} }()
				_, _ = tn.pool.exec(&Hook{Name: "bench", stats: &runStats{}}, sleepProg, tn.app, nil, time.Second)
			}()
		}
		for range cfg.Runtimes {
			<-done
		}
	}
	heap2, rss2 := memNow()
	b.ReportMetric(float64(heap1-heap0)/tenants/1024, "heap-KiB/tenant-1rt")
	b.ReportMetric(float64(rss1-rss0)/tenants/1024, "rss-KiB/tenant-1rt")
	b.ReportMetric(float64(heap2-heap0)/tenants/1024, fmt.Sprintf("heap-KiB/tenant-%drt", cfg.Runtimes))
	b.ReportMetric(float64(rss2-rss0)/tenants/1024, fmt.Sprintf("rss-KiB/tenant-%drt", cfg.Runtimes))
	for _, tn := range ts {
		if made := tn.pool.Status().Runtimes; made != cfg.Runtimes {
			b.Fatalf("runtimes made: %d", made)
		}
	}
}

var sleepProg = mustCompile("sleep(20)")

// BenchmarkHookReload measures an edit taking effect: Reload of a tenant
// with five hooks, and from the save of an edit to the new generation
// (what a tenant admin waits, with the reload's debounce).
func BenchmarkHookReload(b *testing.B) {
	tn := newTenant(b, DefaultConfig())
	col := mustCollection(b, tn.app, hooksCollection)
	var last *core.Record
	for i := range 5 {
		rec := core.NewRecord(col)
		rec.Set("name", fmt.Sprintf("h%d.pb.js", i))
		rec.Set("enabled", true)
		rec.Set("code", fmt.Sprintf(`routerAdd("GET", "/api/r%d", (e) => e.string(200, "v0"))
onRecordCreateRequest((e) => { e.next() }, "posts")`, i))
		if err := tn.app.Save(rec); err != nil {
			b.Fatal(err)
		}
		last = rec
	}
	tn.pool.Reload()
	var reloads, edits []time.Duration
	b.ResetTimer()
	for i := range max(b.N, 50) {
		start := time.Now()
		tn.pool.Reload()
		reloads = append(reloads, time.Since(start))

		seq := tn.pool.Status().Generation
		last.Set("code", `routerAdd("GET", "/api/r4", (e) => e.string(200, "v`+strconv.Itoa(i+1)+`"))`)
		start = time.Now()
		if err := tn.app.Save(last); err != nil {
			b.Fatal(err)
		}
		for tn.pool.Status().Generation == seq {
			time.Sleep(100 * time.Microsecond)
		}
		edits = append(edits, time.Since(start))
	}
	b.StopTimer()
	if _, body := tn.do(b, "GET", "/api/r4", ""); !strings.HasPrefix(body, "v") {
		b.Fatalf("route after the edits: %s", body)
	}
	sort.Slice(reloads, func(i, j int) bool { return reloads[i] < reloads[j] })
	sort.Slice(edits, func(i, j int) bool { return edits[i] < edits[j] })
	b.ReportMetric(float64(percentile(reloads, 0.5).Microseconds())/1000, "reload-p50-ms")
	b.ReportMetric(float64(percentile(edits, 0.5).Microseconds())/1000, "edit-to-live-p50-ms")
	b.ReportMetric(float64(percentile(edits, 0.99).Microseconds())/1000, "edit-to-live-p99-ms")
}

// BenchmarkNewRuntime measures making one hardened runtime.
func BenchmarkNewRuntime(b *testing.B) {
	tn := newTenant(b, DefaultConfig())
	for b.Loop() {
		if _, err := tn.pool.newRuntime(); err != nil {
			b.Fatal(err)
		}
	}
}

func mustCollection(t testing.TB, app core.App, name string) *core.Collection {
	t.Helper()
	c, err := app.FindCollectionByNameOrId(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// memNow is the live heap after a GC and the process's resident set.
func memNow() (heap, rss uint64) {
	goruntime.GC()
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				rss = kb * 1024
			}
		}
	}
	return ms.HeapInuse, rss
}

func mustCompile(src string) *goja.Program {
	p, err := goja.Compile("bench", src, false)
	if err != nil {
		panic(err)
	}
	return p
}
