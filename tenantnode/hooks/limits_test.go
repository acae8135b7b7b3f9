package hooks

import (
	"strings"
	"testing"
	"time"
)

// TestBuiltinsCannotRunPastTheLimits: built-in functions run to their end
// whatever the CPU limit, so those a script can make loop over a length,
// or build a result, of its choosing refuse to before they start; the
// ordinary uses of the same functions still work.
func TestBuiltinsCannotRunPastTheLimits(t *testing.T) {
	cfg := testConfig()
	cfg.CPULimit = 5 * time.Second
	cfg.CPUPerMinute = time.Minute
	cfg.WallLimit = 10 * time.Second
	tn := newTenant(t, cfg)
	try := evalRoute(t, tn)
	for _, code := range []string{
		`new Array(1e8).fill(0).length`,
		`new Array(1e8).join("x").length`,
		`new Array(1e8).indexOf(1)`,
		`Array.prototype.indexOf.call({length: 4e9}, 1)`,
		`[].concat(new Array(1e8)).length`,
		`Array.from({length: 1e8}).length`,
		`String.fromCharCode.apply(null, {length: 1e8}).length`,
		`Reflect.apply(Math.max, null, {length: 1e8})`,
		`"x".repeat(1 << 28).length`,
		`"x".padStart(1 << 28).length`,
		`"ab".repeat(1000).replaceAll("a", "y".repeat(1 << 20)).length`,
		`"ab".repeat(1000).replace(/a/g, () => "y".repeat(1 << 20)).length`,
		`new Array(1000).fill("y".repeat(1 << 20)).join("").length`,
		`JSON.stringify(new Array(1000).fill("y".repeat(1 << 20))).length`,
		`new ArrayBuffer(1 << 30).byteLength`,
		`new Uint8Array(1 << 30).length`,
		`new Float64Array({length: 1e8}).length`,
	} {
		ok, msg := try(code)
		if ok || !strings.Contains(msg, "RangeError") || !strings.Contains(msg, "tenant hooks may") {
			t.Errorf("%s: ok=%v %s (want a RangeError naming the limit)", code, ok, msg)
		}
	}
	// A length the script computes could pass the check and then be
	// another when the built-in reads it again.
	for _, code := range []string{
		`Array.prototype.fill.call((() => { let n = 0; return {get length() { return n++ ? 1e8 : 1 }} })(), 0)`,
		`Array.prototype.indexOf.call(new Proxy([], {get: (o, k) => k === "length" ? 1e8 : o[k]}), 1)`,
		`Array.from(Object.create({get length() { return 1e8 }}))`,
		`new Uint8Array((() => { let n = 0; return {get length() { return n++ ? 1e8 : 1 }} })()).length`,
	} {
		ok, msg := try(code)
		if ok || !strings.Contains(msg, "length is computed") {
			t.Errorf("%s: ok=%v %s (want refused: a computed length)", code, ok, msg)
		}
	}
	for code, want := range map[string]string{
		`Array.prototype.map.call("abc", (c) => c + c).join("")`:                                    "aabbcc",
		`Array.prototype.slice.call({length: 2, 0: "a", 1: "b"}).join()`:                            "a,b",
		`(function () { return Array.prototype.slice.call(arguments).length })(1, 2, 3)`:            "3",
		`Array.from(new Set([1, 2, 2])).length + "," + Array.from({length: 2}, (_, i) => i).join()`: "2,0,1",
		`[3, 1, 2].sort().join("-")`:                                                   "1-2-3",
		`[1, [2, 3]].toString()`:                                                       "1,2,3",
		`[1, 2, 3].map((x) => x * 2).filter((x) => x > 2).length`:                      "2",
		`"abab".replaceAll("a", "x") + "abc".replace(/b/g, (m) => m.toUpperCase())`:    "xbxbaBc",
		`JSON.stringify({a: [1, "x", null], b: {c: true}}, null, 0)`:                   `{"a":[1,"x",null],"b":{"c":true}}`,
		`JSON.stringify({a: 1, b: 2}, (k, v) => k === "b" ? undefined : v)`:            `{"a":1}`,
		`JSON.stringify({a: 1, b: 2}, ["b"])`:                                          `{"b":2}`,
		`Math.max.apply(null, [1, 5, 3]) + Reflect.apply(Math.min, null, [4, 2])`:      "7",
		`Array.from("abc").length + "," + "ab".repeat(3) + "," + "7".padStart(3, "0")`: "3,ababab,007",
		`(() => { const b = new Uint8Array(4); return (b instanceof Uint8Array) + "," + b.length + "," + (b.constructor === Uint8Array) })()`: "true,4,true",
		`new Uint8Array([1, 2, 3]).map((x) => x * 2).join(",") + "," + new ArrayBuffer(8).slice(4).byteLength`:                                "2,4,6,4",
		`(() => { class B extends Uint8Array {}; return new B(2) instanceof B })()`:                                                           "true",
	} {
		if ok, got := try(code); !ok || got != want {
			t.Errorf("%s: got %v %q, want %q", code, ok, got, want)
		}
	}
}

// TestRegexpBacktrackingEnds: a backtracking regular expression runs in
// one built-in call no interrupt reaches; its match ends at the CPU limit
// (and finds nothing) or the run stops there.
func TestRegexpBacktrackingEnds(t *testing.T) {
	tn := newTenant(t, testConfig())
	try := evalRoute(t, tn)
	done := make(chan string, 1)
	go func() {
		ok, v := try(`/^(?=(a+)+$)/.test("a".repeat(40) + "!")`)
		if !ok {
			v = "failed: " + v
		}
		done <- v
	}()
	select {
	case v := <-done:
		if v != "false" && !strings.Contains(v, "CPU time limit") {
			t.Fatalf("got %s, want false or the run stopped at its CPU limit", v)
		}
	case <-time.After(time.Minute):
		t.Fatal("the match has not ended after a minute (it backtracks for hours)")
	}
}

// TestMemoryPerRun: a run that keeps allocating is stopped at its memory
// limit and its runtime, with what the run kept in it, is dropped; a
// runtime whose runs have allocated RuntimeMemory in all is made anew.
func TestMemoryPerRun(t *testing.T) {
	cfg := testConfig()
	cfg.CPULimit = 5 * time.Second
	cfg.CPUPerMinute = time.Minute
	cfg.WallLimit = 10 * time.Second
	cfg.MemoryPerRun = 64 << 20
	cfg.RuntimeMemory = 8 << 20
	tn := newTenant(t, cfg)
	try := evalRoute(t, tn)

	ok, msg := try(`(() => { globalThis.kept = []; for (let i = 0; i < 100000; i++) kept.push("y".repeat(1 << 20) + i); return kept.length })()`)
	if ok || !strings.Contains(msg, "memory limit") {
		t.Fatalf("got %v %s, want the run stopped at its memory limit", ok, msg)
	}
	if got := tn.pool.Totals().Recycled; got < 1 {
		t.Fatalf("runtimes dropped: got %d, want at least 1", got)
	}
	if ok, v := try(`typeof globalThis.kept`); !ok || v != "undefined" {
		t.Fatalf("what the stopped run kept is still there: %v %s", ok, v)
	}

	// Each run allocates about 4 MiB and keeps it: the runtime is made
	// anew after a few, so what its globals hold stays bounded.
	before := tn.pool.Totals().Recycled
	for range 12 {
		if ok, v := try(`(() => { globalThis.kept = (globalThis.kept || []); for (let i = 0; i < 4; i++) kept.push("z".repeat(1 << 20) + i); return kept.length })()`); !ok {
			t.Fatalf("a run within the limits: %s", v)
		}
	}
	if got := tn.pool.Totals().Recycled - before; got < 2 {
		t.Fatalf("runtimes dropped over 12 runs of 4 MiB each with RuntimeMemory 8 MiB: got %d, want at least 2", got)
	}
}
