package hooks

import (
	"fmt"
	"sync"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/dop251/goja"
)

// goja checks for an interrupt between JavaScript instructions only: a
// built-in function runs to its end however long it takes and whatever it
// allocates. new Array(1e8).fill(0) ran 105 s and allocated 16 GiB here
// with a 100 ms limit; "x".repeat(1 << 30) made a 1 GiB string in one
// call. So the built-ins that loop over a length a script chooses, or
// build a result of a size it chooses, are wrapped in checks that refuse
// work past these bounds before it starts.
const (
	// maxElements bounds the length an array built-in works through in
	// one call (fill, join, indexOf, sort, Array.from, apply, ...).
	maxElements = 1 << 20
	// maxChars bounds a string a built-in makes in one call (repeat,
	// padStart, join, replaceAll, JSON.stringify).
	maxChars = 1 << 24
	// maxBytes bounds an ArrayBuffer or typed array.
	maxBytes = 64 << 20
)

// nativeGuards is the script that installs the checks; it runs once in
// every runtime, before tenant code.
const nativeGuards = `(function (maxElements, maxChars, maxBytes) {
  "use strict";
  const apply = Reflect.apply, construct = Reflect.construct, define = Object.defineProperty;
  const names = Object.getOwnPropertyNames, proto = Object.getPrototypeOf, Str = String;
  const lengthOf = (o) => {
    if (o === null || o === undefined) return 0;
    const n = +o.length;
    return n > 0 ? n : 0;
  };
  const limit = "tenant hooks may handle at most " + maxElements + " elements in one call";
  const elements = (what, o) => {
    const n = lengthOf(o);
    if (n > maxElements) throw new RangeError(what + " on " + n + " elements: " + limit);
  };
  const chars = (what, n) => {
    if (n > maxChars) throw new RangeError(what + " would make a string of " + n + " characters: tenant hooks may make at most " + maxChars + " in one call");
  };
  const replace = (obj, name, make) => {
    const f = obj[name];
    if (typeof f !== "function") return;
    const w = make(f);
    define(w, "name", {value: f.name});
    define(w, "length", {value: f.length});
    define(obj, name, {value: w, writable: true, configurable: true, enumerable: false});
  };
  const checked = (obj, name, check) => replace(obj, name, (f) => ({[name](...args) { check(this, args); return apply(f, this, args); }})[name]);

  // Array methods that loop over the length.
  const cheap = new Set(["constructor", "push", "pop", "at", "keys", "values", "entries", "join", "toString", "toLocaleString"]);
  for (const name of names(Array.prototype)) {
    if (!cheap.has(name)) checked(Array.prototype, name, (self, args) => {
      elements("Array.prototype." + name, self);
      if (name === "concat") {
        let n = lengthOf(self);
        for (const a of args) n += lengthOf(a);
        if (n > maxElements) throw new RangeError("Array.prototype.concat of " + n + " elements: " + limit);
      }
    });
  }
  // join converts and measures each element before joining: its result
  // can be far larger than the array.
  replace(Array.prototype, "join", (join) => ({join(sep) {
    elements("Array.prototype.join", this);
    const n = lengthOf(this), s = sep === undefined ? "," : Str(sep), parts = new Array(n);
    let size = n > 0 ? (n - 1) * s.length : 0;
    for (let i = 0; i < n; i++) {
      const e = this[i];
      const p = e === undefined || e === null ? "" : Str(e);
      size += p.length;
      chars("Array.prototype.join", size);
      parts[i] = p;
    }
    return apply(join, parts, [s]);
  }}).join);
  checked(Array, "from", (self, args) => elements("Array.from", args[0]));
  checked(Function.prototype, "apply", (self, args) => elements("Function.prototype.apply", args[1]));
  checked(Reflect, "apply", (self, args) => elements("Reflect.apply", args[2]));
  checked(Reflect, "construct", (self, args) => elements("Reflect.construct", args[1]));
  checked(String, "fromCharCode", (self, args) => elements("String.fromCharCode", args));
  checked(String, "fromCodePoint", (self, args) => elements("String.fromCodePoint", args));

  // Strings whose size the arguments choose.
  checked(String.prototype, "repeat", (self, args) => chars("String.prototype.repeat", Str(self).length * (+args[0] || 0)));
  checked(String.prototype, "padStart", (self, args) => chars("String.prototype.padStart", +args[0] || 0));
  checked(String.prototype, "padEnd", (self, args) => chars("String.prototype.padEnd", +args[0] || 0));
  for (const name of ["replace", "replaceAll"]) {
    replace(String.prototype, name, (f) => ({[name](pattern, replacement) {
      const s = Str(this);
      if (typeof replacement === "function") {
        // The replacer's results are added up as they come.
        const fn = replacement;
        let size = s.length;
        replacement = function (...a) {
          const r = Str(apply(fn, this, a));
          size += r.length;
          chars("String.prototype." + name, size);
          return r;
        };
      } else {
        const r = Str(replacement);
        if (s.length + (s.length + 1) * r.length > maxChars) {
          let count = 0;
          if (typeof pattern === "string" || !(pattern instanceof RegExp)) {
            const p = Str(pattern);
            if (p === "") count = s.length + 1;
            else for (let i = s.indexOf(p); i >= 0; i = s.indexOf(p, i + p.length)) count++;
          } else {
            count = lengthOf(apply(String.prototype.match, s, [pattern.global ? pattern : new RegExp(pattern.source, pattern.flags + "g")]));
          }
          chars("String.prototype." + name, s.length + count * r.length);
        }
      }
      return apply(f, this, [pattern, replacement]);
    }})[name]);
  }
  // JSON.stringify measures what it writes through its replacer.
  replace(JSON, "stringify", (stringify) => ({stringify(value, replacer, space) {
    if (Array.isArray(replacer)) return apply(stringify, JSON, [value, replacer, space]);
    const fn = typeof replacer === "function" ? replacer : null;
    let size = 0;
    const measure = function (key, v) {
      if (fn !== null) v = apply(fn, this, [key, v]);
      size += Str(key).length + (typeof v === "string" ? v.length : 8);
      chars("JSON.stringify", size);
      return v;
    };
    return apply(stringify, JSON, [value, measure, space]);
  }}).stringify);

  // Buffers and typed arrays.
  const bytes = (what, n) => {
    if (n > maxBytes) throw new RangeError(what + " of " + n + " bytes: tenant hooks may allocate at most " + maxBytes + " in one buffer");
  };
  // A constructor is replaced by a function that checks and constructs;
  // it shares the prototype, so instanceof, constructor, subclasses and
  // the static methods behave as before.
  const guardConstructor = (name, check) => {
    const C = globalThis[name];
    if (typeof C !== "function") return;
    const W = function (...args) {
      if (new.target === undefined) throw new TypeError("Constructor " + name + " requires 'new'");
      check(args);
      return construct(C, args, new.target === W ? C : new.target);
    };
    Object.setPrototypeOf(W, C);
    define(W, "name", {value: name});
    define(W, "length", {value: C.length});
    define(W, "prototype", {value: C.prototype});
    define(C.prototype, "constructor", {value: W, writable: true, configurable: true, enumerable: false});
    define(globalThis, name, {value: W, writable: true, configurable: true, enumerable: false});
  };
  guardConstructor("ArrayBuffer", (args) => bytes("new ArrayBuffer", +args[0] || 0));
  for (const name of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
    "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"]) {
    const size = globalThis[name] ? globalThis[name].BYTES_PER_ELEMENT : 1;
    guardConstructor(name, (args) => {
      const a = args[0];
      if (a !== null && typeof a === "object") {
        if (!(a instanceof ArrayBuffer)) {
          elements("new " + name, a);
          bytes("new " + name, lengthOf(a) * size);
        }
      } else {
        bytes("new " + name, (+a || 0) * size);
      }
    });
  }
  const TypedArray = proto(Int8Array.prototype).constructor;
  checked(TypedArray, "from", (self, args) => elements("TypedArray.from", args[0]));
})`

// guardsProgram is nativeGuards compiled once for every runtime.
var guardsProgram = sync.OnceValue(func() *goja.Program {
	return goja.MustCompile("pbe-native-guards.js", nativeGuards, true)
})

// guardNatives installs the checks in vm.
func guardNatives(vm *goja.Runtime) error {
	install, err := vm.RunProgram(guardsProgram())
	if err != nil {
		return fmt.Errorf("native guards: %w", err)
	}
	fn, ok := goja.AssertFunction(install)
	if !ok {
		return fmt.Errorf("native guards: not a function")
	}
	_, err = fn(goja.Undefined(), vm.ToValue(maxElements), vm.ToValue(maxChars), vm.ToValue(maxBytes))
	if err != nil {
		return fmt.Errorf("native guards: %w", err)
	}
	return nil
}

// setRegexpTimeout bounds a backtracking regular expression's match:
// goja runs patterns RE2 cannot (lookaround, backreferences) on regexp2,
// whose matching is one long call no interrupt reaches:
// /^(?=(a+)+$)/.test("a".repeat(26) + "!") ran 10.9 s past a 200 ms
// limit. A match that times out finds nothing. The timeout is
// process-wide, set from the first pool's CPU limit before any tenant
// code has run.
func setRegexpTimeout(d time.Duration) {
	regexpOnce.Do(func() { regexp2.DefaultMatchTimeout = d })
}

var regexpOnce sync.Once
