package hooks

import (
	"fmt"
	"reflect"
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
// lengthOf, elements and chars are the guard's own (Go) checks.
const nativeGuards = `(function (maxChars, maxBytes, lengthOf, elements, chars) {
  "use strict";
  const apply = Reflect.apply, construct = Reflect.construct, define = Object.defineProperty;
  const Str = String;
  const replace = (obj, name, make) => {
    const f = obj[name];
    if (typeof f !== "function") return;
    const w = make(f);
    define(w, "name", {value: f.name});
    define(w, "length", {value: f.length});
    define(obj, name, {value: w, writable: true, configurable: true, enumerable: false});
  };

  // join converts and measures each element before joining: its result
  // can be far larger than the array.
  replace(Array.prototype, "join", (join) => ({join(sep) {
    const n = lengthOf(this), s = sep === undefined ? "," : Str(sep);
    elements("Array.prototype.join", n);
    const parts = new Array(n);
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
          const n = lengthOf(a);
          elements("new " + name, n);
          bytes("new " + name, n * size);
        }
      } else {
        bytes("new " + name, (+a || 0) * size);
      }
    });
  }
})`

// guardsProgram is nativeGuards compiled once for every runtime.
var guardsProgram = sync.OnceValue(func() *goja.Program {
	return goja.MustCompile("pbe-native-guards.js", nativeGuards, true)
})

// guardNatives installs the checks in vm: the simple ones, most of them,
// as Go functions (JavaScript closures for them cost a runtime about
// 60 KiB more), the others by nativeGuards.
func guardNatives(vm *goja.Runtime) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("native guards: %v", r)
		}
	}()
	g := guard{vm: vm}
	g.isView, _ = goja.AssertFunction(vm.Get("ArrayBuffer").ToObject(vm).Get("isView"))
	g.ownProperty, _ = goja.AssertFunction(vm.Get("Object").ToObject(vm).Get("getOwnPropertyDescriptor"))
	array := vm.Get("Array").ToObject(vm)
	arrayProto := array.Get("prototype").ToObject(vm)
	for _, name := range arrayProto.GetOwnPropertyNames() {
		if !cheapArrayMethods[name] {
			g.wrap(arrayProto, name, func(this goja.Value, args []goja.Value) {
				n := g.lengthOf(this)
				if name == "concat" {
					for _, a := range args {
						n += g.lengthOf(a)
					}
				}
				g.elements("Array.prototype."+name, n)
			})
		}
	}
	g.wrap(array, "from", g.elementsOfArg("Array.from", 0))
	g.wrap(vm.Get("Function").ToObject(vm).Get("prototype").ToObject(vm), "apply", g.elementsOfArg("Function.prototype.apply", 1))
	reflect := vm.Get("Reflect").ToObject(vm)
	g.wrap(reflect, "apply", g.elementsOfArg("Reflect.apply", 2))
	g.wrap(reflect, "construct", g.elementsOfArg("Reflect.construct", 1))
	str := vm.Get("String").ToObject(vm)
	for _, name := range []string{"fromCharCode", "fromCodePoint"} {
		g.wrap(str, name, func(_ goja.Value, args []goja.Value) { g.elements("String."+name, float64(len(args))) })
	}
	strProto := str.Get("prototype").ToObject(vm)
	g.wrap(strProto, "repeat", func(this goja.Value, args []goja.Value) {
		g.chars("String.prototype.repeat", g.lengthOf(this)*g.number(args, 0))
	})
	for _, name := range []string{"padStart", "padEnd"} {
		g.wrap(strProto, name, func(_ goja.Value, args []goja.Value) { g.chars("String.prototype."+name, g.number(args, 0)) })
	}
	typedArray := vm.Get("Int8Array").ToObject(vm).Prototype()
	g.wrap(typedArray, "from", g.elementsOfArg("TypedArray.from", 0))

	install, err := vm.RunProgram(guardsProgram())
	if err != nil {
		return fmt.Errorf("native guards: %w", err)
	}
	fn, ok := goja.AssertFunction(install)
	if !ok {
		return fmt.Errorf("native guards: not a function")
	}
	_, err = fn(goja.Undefined(), vm.ToValue(maxChars), vm.ToValue(maxBytes),
		vm.ToValue(func(call goja.FunctionCall) goja.Value { return vm.ToValue(g.lengthOf(call.Argument(0))) }),
		vm.ToValue(g.elements), vm.ToValue(g.chars))
	if err != nil {
		return fmt.Errorf("native guards: %w", err)
	}
	return nil
}

// cheapArrayMethods are the array methods that do not loop over the
// array (join is measured by nativeGuards).
var cheapArrayMethods = map[string]bool{"constructor": true, "length": true, "push": true, "pop": true, "at": true,
	"keys": true, "values": true, "entries": true, "join": true, "toString": true, "toLocaleString": true}

// guard builds the checks of one runtime; isView and ownProperty are
// ArrayBuffer.isView and Object.getOwnPropertyDescriptor as they were
// before any script ran.
type guard struct {
	vm                  *goja.Runtime
	isView, ownProperty goja.Callable
}

// wrap replaces obj[name] with a function that runs check on its this and
// arguments, then the original.
func (g guard) wrap(obj *goja.Object, name string, check func(this goja.Value, args []goja.Value)) {
	v := obj.Get(name)
	orig, ok := goja.AssertFunction(v)
	if !ok {
		return
	}
	w := g.vm.ToValue(func(call goja.FunctionCall) goja.Value {
		check(call.This, call.Arguments)
		res, err := orig(call.This, call.Arguments...)
		if err != nil {
			panic(err)
		}
		return res
	}).ToObject(g.vm)
	_ = w.DefineDataProperty("length", v.ToObject(g.vm).Get("length"), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	_ = w.DefineDataProperty("name", g.vm.ToValue(name), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	if err := obj.DefineDataProperty(name, w, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE); err != nil {
		panic(err)
	}
}

// lengthOf is v.length as an array built-in reads it. It throws a
// TypeError for a length the script computes (a getter, a Proxy): the
// built-in reads it again after the check and could be given another.
func (g guard) lengthOf(v goja.Value) float64 {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return 0
	}
	o, isObject := v.(*goja.Object)
	if !isObject {
		o = v.ToObject(g.vm) // a primitive: its length is its own
	} else if !g.fixedLength(o) {
		panic(g.vm.NewTypeError("array built-ins on an object whose length is computed (a getter or a Proxy) are not available to tenant hooks"))
	}
	n := o.Get("length")
	if n == nil {
		return 0
	}
	if f := n.ToFloat(); f > 0 {
		return f
	}
	return 0
}

// proxyType is what goja reports as the export type of a Proxy.
var proxyType = reflect.TypeOf(goja.Proxy{})

// fixedLength reports whether o's length is data, not computed: an Array
// or a typed array, or an object whose nearest length property is a data
// property, with no Proxy on the way.
func (g guard) fixedLength(o *goja.Object) bool {
	if o.ExportType() == proxyType {
		return false
	}
	if o.ClassName() == "Array" {
		return true
	}
	if v, err := g.isView(goja.Undefined(), o); err == nil && v.ToBoolean() {
		return true
	}
	for p := o; p != nil; p = p.Prototype() {
		if p.ExportType() == proxyType {
			return false
		}
		d, err := g.ownProperty(goja.Undefined(), p, g.vm.ToValue("length"))
		if err != nil {
			return false
		}
		if desc, ok := d.(*goja.Object); ok {
			get, set := desc.Get("get"), desc.Get("set")
			return (get == nil || goja.IsUndefined(get)) && (set == nil || goja.IsUndefined(set))
		}
	}
	return true
}

func (g guard) number(args []goja.Value, i int) float64 {
	if i >= len(args) {
		return 0
	}
	if f := args[i].ToFloat(); f > 0 {
		return f
	}
	return 0
}

func (g guard) elementsOfArg(what string, i int) func(goja.Value, []goja.Value) {
	return func(_ goja.Value, args []goja.Value) {
		if i < len(args) {
			g.elements(what, g.lengthOf(args[i]))
		}
	}
}

func (g guard) elements(what string, n float64) {
	if n > maxElements {
		g.throwRange(fmt.Sprintf("%s on %.0f elements: tenant hooks may handle at most %d elements in one call", what, n, maxElements))
	}
}

func (g guard) chars(what string, n float64) {
	if n > maxChars {
		g.throwRange(fmt.Sprintf("%s would make a string of %.0f characters: tenant hooks may make at most %d in one call", what, n, maxChars))
	}
}

// throwRange throws a RangeError with msg.
func (g guard) throwRange(msg string) {
	e, err := g.vm.New(g.vm.Get("RangeError"), g.vm.ToValue(msg))
	if err != nil {
		panic(err)
	}
	panic(e)
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
