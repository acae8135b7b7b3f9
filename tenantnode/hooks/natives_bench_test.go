package hooks

import (
	"testing"

	"github.com/dop251/goja"
)

// BenchmarkGuardNatives is what installing the built-in checks adds to
// making a runtime.
func BenchmarkGuardNatives(b *testing.B) {
	for b.Loop() {
		if err := guardNatives(goja.New()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemRun is what the memory account adds to a run.
func BenchmarkMemRun(b *testing.B) {
	vm := goja.New()
	tid := threadID()
	for b.Loop() {
		startMemRun(vm, tid, 1<<30).finish()
	}
}
