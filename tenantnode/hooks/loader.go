package hooks

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/cron"
	"github.com/pocketbase/pocketbase/tools/hook"
)

// loader runs hooks' top-level code in one runtime whose binding functions
// record into a generation.
type loader struct {
	p  *Pool
	g  *generation
	rt *runtime
	// cur is the hook being loaded and pending what it has bound so far;
	// pending is committed only if the whole hook loads.
	cur     *Hook
	pending pendingBinds
}

type pendingBinds struct {
	events map[string][]*handler
	routes []routeBind
	uses   []*middleware
	crons  map[string]*cronJob
	remove []string
	binds  []string
}

// unavailableHooks cannot be bound by a hook stored in the database: the
// tenant is already bootstrapped and serving when hooks load.
var unavailableHooks = map[string]bool{"OnBootstrap": true, "OnServe": true}

// run loads h; on error nothing it bound is kept.
func (l *loader) run(h *Hook) (err error) {
	l.cur = h
	l.pending = pendingBinds{events: map[string][]*handler{}, crons: map[string]*cronJob{}}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := l.p.runScript(l.rt, threadID(), h, l.p.cfg.CPULimit); err != nil {
		return err
	}
	return l.commit()
}

// commit adds the loaded hook's bindings to the generation.
func (l *loader) commit() error {
	g, b := l.g, l.pending
	for _, r := range b.routes {
		if err := g.routes.add(r); err != nil {
			return err
		}
	}
	for key, hs := range b.events {
		g.events[key] = append(g.events[key], hs...)
	}
	g.uses = append(g.uses, b.uses...)
	if len(g.uses) > maxUses {
		return fmt.Errorf("routerUse: at most %d global middlewares per tenant", maxUses)
	}
	for _, id := range b.remove {
		delete(g.crons, id)
	}
	for id, job := range b.crons {
		g.crons[id] = job
	}
	l.cur.Binds = b.binds
	return nil
}

// bind sets the loader's binding functions for the current hook.
func (l *loader) bind() {
	vm := l.rt.vm
	for _, m := range appHookMethods() {
		name := m.Name
		js := jsName(name)
		if unavailableHooks[name] {
			vm.Set(js, notAvailable(vm, js, "the tenant is already serving when its hooks load"))
			continue
		}
		vm.Set(js, func(fn goja.Value, tags ...string) {
			prog := l.compile(fn, eventWrapper)
			key := eventKey(name, tags)
			l.pending.events[key] = append(l.pending.events[key], &handler{hook: l.cur, prog: prog})
			desc := js
			if len(tags) > 0 {
				desc += "(" + strings.Join(tags, ", ") + ")"
			}
			l.pending.binds = append(l.pending.binds, desc)
		})
	}
	vm.Set("routerAdd", func(method, path string, fn goja.Value, mws ...goja.Value) {
		method = strings.ToUpper(strings.TrimSpace(method))
		if method == "*" {
			method = ""
		}
		r := routeBind{method: method, path: path, h: &handler{hook: l.cur, prog: l.compile(fn, routeWrapper)}}
		for _, mw := range mws {
			r.mws = append(r.mws, l.middleware(mw))
		}
		l.pending.routes = append(l.pending.routes, r)
		l.pending.binds = append(l.pending.binds, strings.TrimSpace(method+" "+path))
	})
	vm.Set("routerUse", func(mws ...goja.Value) {
		for _, mw := range mws {
			l.pending.uses = append(l.pending.uses, l.middleware(mw))
		}
		l.pending.binds = append(l.pending.binds, "routerUse")
	})
	vm.Set("cronAdd", func(id, expr string, fn goja.Value) {
		if id == "" || strings.HasPrefix(id, "__") {
			panic(vm.NewGoError(fmt.Errorf("cronAdd: job id %q is reserved or empty; choose another", id)))
		}
		if _, err := cron.NewSchedule(expr); err != nil {
			panic(vm.NewGoError(fmt.Errorf("cronAdd %s: %w", id, err)))
		}
		l.pending.crons[id] = &cronJob{expr: expr, h: &handler{hook: l.cur, prog: l.compile(fn, cronWrapper)}}
		l.pending.binds = append(l.pending.binds, "cron "+id+" ("+expr+")")
	})
	vm.Set("cronRemove", func(id string) {
		delete(l.pending.crons, id)
		l.pending.remove = append(l.pending.remove, id)
	})
	vm.Set("Middleware", func(call goja.ConstructorCall) *goja.Object {
		o := vm.NewObject()
		_ = o.Set("__pbeMiddleware", call.Argument(0))
		_ = o.Set("priority", call.Argument(1))
		_ = o.Set("id", call.Argument(2))
		return o
	})
}

// Wrappers around a hook's function: the function's own text goes where
// %s is, on the line it was written on, so errors point at the hook's
// own lines. Event handlers see the event's app as $app (inside a
// transaction, the transaction's), as with jsvm.
const (
	eventWrapper = `{(function(e){$app=(e&&e.app)||$app;return (%s).call(undefined,e)}).apply(undefined,__args)}`
	routeWrapper = `{(function(e){return (%s).call(undefined,e)}).apply(undefined,__args)}`
	cronWrapper  = `{(%s).apply(undefined)}`
)

// compile compiles a function the hook passed (or its source as a
// string) to run on any runtime, keeping its line numbers.
func (l *loader) compile(fn goja.Value, wrapper string) *goja.Program {
	vm := l.rt.vm
	if fn == nil || goja.IsUndefined(fn) || goja.IsNull(fn) {
		panic(vm.NewGoError(errors.New("a handler function is required")))
	}
	src := fn.String()
	line := 1
	if i := strings.Index(l.cur.code, src); i >= 0 {
		line += strings.Count(l.cur.code[:i], "\n")
	}
	prog, err := goja.Compile(l.cur.Name, strings.Repeat("\n", line-1)+fmt.Sprintf(wrapper, src), false)
	if err != nil {
		panic(vm.NewGoError(err))
	}
	return prog
}

// middleware is a route middleware: a native one ($apis.requireAuth())
// or a JavaScript function.
type middleware struct {
	native   *hook.Handler[*core.RequestEvent]
	h        *handler
	priority int
	id       string
}

func (l *loader) middleware(v goja.Value) *middleware {
	vm := l.rt.vm
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		panic(vm.NewGoError(errors.New("a middleware must not be empty")))
	}
	switch x := v.Export().(type) {
	case *hook.Handler[*core.RequestEvent]:
		return &middleware{native: x}
	case func(*core.RequestEvent) error:
		return &middleware{native: &hook.Handler[*core.RequestEvent]{Func: x}}
	}
	if o, ok := v.(*goja.Object); ok {
		if fn := o.Get("__pbeMiddleware"); fn != nil && !goja.IsUndefined(fn) {
			m := &middleware{h: &handler{hook: l.cur, prog: l.compile(fn, routeWrapper)}}
			if pr := o.Get("priority"); pr != nil && !goja.IsUndefined(pr) {
				m.priority = int(pr.ToInteger())
			}
			if id := o.Get("id"); id != nil && !goja.IsUndefined(id) {
				m.id = id.String()
			}
			return m
		}
		if _, ok := goja.AssertFunction(v); ok {
			return &middleware{h: &handler{hook: l.cur, prog: l.compile(v, routeWrapper)}}
		}
	}
	panic(vm.NewGoError(fmt.Errorf("unsupported middleware %s", v.String())))
}

// handlerFunc is m as a PocketBase middleware run by p.
func (p *Pool) handlerFunc(m *middleware) *hook.Handler[*core.RequestEvent] {
	if m.native != nil {
		return m.native
	}
	return &hook.Handler[*core.RequestEvent]{Id: m.id, Priority: m.priority, Func: func(e *core.RequestEvent) error {
		_, err := p.exec(m.h.hook, m.h.prog, e.App, []any{e}, p.cfg.CPULimit)
		return err
	}}
}
