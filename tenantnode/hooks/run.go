package hooks

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/router"
)

// errCPULimit is what an interrupted run was interrupted with.
var errCPULimit = errors.New("CPU time limit exceeded")

// errWallLimit interrupts a run that has taken WallLimit.
var errWallLimit = errors.New("time limit exceeded")

// newRuntime makes a hardened runtime.
func (p *Pool) newRuntime() (*runtime, error) {
	vm, err := newVM()
	if err != nil {
		return nil, err
	}
	rt := &runtime{vm: vm}
	p.harden(rt)
	if err := guardNatives(vm); err != nil {
		return nil, err
	}
	return rt, nil
}

// acquire takes an idle runtime, makes one while fewer than Runtimes
// exist, or waits for one until WallLimit.
func (p *Pool) acquire() (*runtime, error) {
	select {
	case rt := <-p.idle:
		return rt, nil
	default:
	}
	p.mu.Lock()
	if p.made < p.cfg.Runtimes {
		p.made++
		p.mu.Unlock()
		rt, err := p.newRuntime()
		if err != nil {
			p.mu.Lock()
			p.made--
			p.mu.Unlock()
			return nil, err
		}
		return rt, nil
	}
	p.mu.Unlock()
	t := time.NewTimer(p.cfg.WallLimit)
	defer t.Stop()
	select {
	case rt := <-p.idle:
		return rt, nil
	case <-t.C:
		return nil, router.NewApiError(503, fmt.Sprintf("All %d of the tenant's hook runtimes stayed busy for %s; try again later.", p.cfg.Runtimes, p.cfg.WallLimit), nil)
	}
}

// release returns rt to the idle runtimes, or drops it once its runs have
// allocated RuntimeMemory (so a fresh one is made when next needed).
func (p *Pool) release(rt *runtime) {
	if p.closed.Load() {
		return
	}
	if rt.allocated >= p.cfg.RuntimeMemory {
		p.mu.Lock()
		p.made--
		p.mu.Unlock()
		p.totals.recycled.Add(1)
		return
	}
	select {
	case p.idle <- rt:
	default:
	}
}

// exec runs prog for hook h with __args = args and $app = app, within
// the CPU and wall-clock limits (budget is the CPU limit), and records the
// run. A run nested in another on the same goroutine shares its runtime
// and its budget.
func (p *Pool) exec(h *Hook, prog *goja.Program, app core.App, args []any, budget time.Duration) (goja.Value, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	tid := threadID()
	start := time.Now()

	p.mu.Lock()
	rt := p.running[tid]
	p.mu.Unlock()
	if rt != nil {
		vm := rt.vm
		prevApp, prevArgs := vm.Get("$app"), vm.Get("__args")
		vm.Set("$app", app)
		vm.Set("__args", args)
		res, err := vm.RunProgram(prog)
		vm.Set("$app", prevApp)
		vm.Set("__args", prevArgs)
		err = p.runError(h, res, err)
		h.stats.record(p, time.Since(start), err)
		return res, err
	}

	if wait := p.cpu.exhausted(start, p.cfg.CPUPerMinute); wait > 0 {
		err := router.NewTooManyRequestsError(fmt.Sprintf("The tenant's hooks have used their %s of CPU time for this minute; try again in %d s.",
			p.cfg.CPUPerMinute, int(wait.Seconds())+1), nil)
		h.stats.record(p, 0, err)
		return nil, err
	}
	rt, err := p.acquire()
	if err != nil {
		h.stats.record(p, time.Since(start), err)
		return nil, err
	}
	res, err := p.runOn(rt, tid, prog, app, args, budget)
	p.release(rt)
	err = p.runError(h, res, err)
	h.stats.record(p, time.Since(start), err)
	return res, err
}

// runOn runs prog on rt from the thread tid (locked by the caller) under
// a watchdog.
func (p *Pool) runOn(rt *runtime, tid int, prog *goja.Program, app core.App, args []any, budget time.Duration) (goja.Value, error) {
	return p.guarded(rt, tid, app, args, budget, func(vm *goja.Runtime) (goja.Value, error) {
		return vm.RunProgram(prog)
	})
}

// guarded runs fn on rt as the run of thread tid, interrupted past the
// budget.
func (p *Pool) guarded(rt *runtime, tid int, app core.App, args []any, budget time.Duration, fn func(*goja.Runtime) (goja.Value, error)) (goja.Value, error) {
	p.mu.Lock()
	p.running[tid] = rt
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, tid)
		p.mu.Unlock()
	}()

	vm := rt.vm
	rt.deadline = time.Now().Add(p.cfg.WallLimit)
	rt.setSecrets(p.current())
	vm.Set("$app", app)
	vm.Set("__args", args)
	w := &watchdog{vm: vm, tid: tid, budget: budget, cpu0: threadCPU(tid), deadline: rt.deadline}
	w.start()
	mem := startMemRun(vm, tid, p.cfg.MemoryPerRun)
	res, err := fn(vm)
	w.stop()
	rt.allocated += mem.finish()
	if mem.over {
		rt.allocated = max(rt.allocated, p.cfg.RuntimeMemory)
	}
	vm.ClearInterrupt()
	vm.Set("__args", goja.Undefined())
	used := threadCPU(tid) - w.cpu0
	p.cpu.charge(time.Now(), used)
	p.totals.cpuNanos.Add(int64(used))
	return res, err
}

// cpuWindow adds up the CPU time of a tenant's runs per minute.
type cpuWindow struct {
	mu    sync.Mutex
	start time.Time
	used  time.Duration
}

// exhausted returns how long until the window ends when its limit is used
// up, or 0.
func (c *cpuWindow) exhausted(now time.Time, limit time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.start) >= time.Minute {
		c.start, c.used = now, 0
	}
	if c.used < limit {
		return 0
	}
	return c.start.Add(time.Minute).Sub(now)
}

func (c *cpuWindow) charge(now time.Time, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.start) >= time.Minute {
		c.start, c.used = now, 0
	}
	c.used += d
}

// runScript runs hook h's whole code (its top level) on rt from thread tid,
// for the loader and for migrations; the error says where it failed.
func (p *Pool) runScript(rt *runtime, tid int, h *Hook, budget time.Duration) error {
	prog, err := goja.Compile(h.Name, h.code, false)
	if err != nil {
		return err
	}
	res, err := p.runOn(rt, tid, prog, p.app, nil, budget)
	if err = p.runError(h, res, err); err != nil {
		var he *hookError
		if errors.As(err, &he) {
			return errors.New(he.detail)
		}
		return err
	}
	return nil
}

// runError turns a run's outcome into the error PocketBase sees: an error
// the hook returned or threw (an ApiError keeps its status), or why it was
// stopped. Failures are logged to the tenant's log with the hook's name
// and line.
func (p *Pool) runError(h *Hook, res goja.Value, err error) error {
	if err == nil {
		if res != nil {
			if e, ok := res.Export().(error); ok {
				return e
			}
		}
		return nil
	}
	var interrupted *goja.InterruptedError
	if errors.As(err, &interrupted) {
		why := "its CPU time limit of " + p.cfg.CPULimit.String()
		switch {
		case errors.Is(interrupted, errWallLimit):
			why = "its time limit of " + p.cfg.WallLimit.String()
		case errors.Is(interrupted, errMemoryLimit):
			why = fmt.Sprintf("its memory limit of %d MiB", p.cfg.MemoryPerRun>>20)
		}
		p.app.Logger().Error("hook stopped: it exceeded "+why, "source", "hooks", "hook", h.Name, "at", interrupted.Error())
		return &hookError{hook: h.Name, err: router.NewInternalServerError("A server-side hook was stopped: it exceeded "+why+".", nil), detail: "stopped: exceeded " + why + " (" + interrupted.Error() + ")"}
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		if v, ok := ex.Value().Export().(error); ok {
			// A thrown Go error (new BadRequestError(...), a failed
			// $app.save): PocketBase answers with it as it is.
			return &hookError{hook: h.Name, err: v, detail: ex.Error()}
		}
		if m, ok := ex.Value().Export().(map[string]any); ok {
			if v, ok := m["value"].(error); ok {
				return &hookError{hook: h.Name, err: v, detail: ex.Error()}
			}
		}
		p.app.Logger().Error("hook threw: "+ex.Error(), "source", "hooks", "hook", h.Name)
		return &hookError{hook: h.Name, err: errors.New(ex.Error()), detail: ex.Error()}
	}
	return &hookError{hook: h.Name, err: err, detail: err.Error()}
}

// hookError is a failed run: Unwrap gives PocketBase the error to answer
// with, Error names the hook and where it failed.
type hookError struct {
	hook   string
	err    error
	detail string
}

func (e *hookError) Error() string { return "hook " + e.hook + ": " + e.detail }
func (e *hookError) Unwrap() error { return e.err }

// watchdog interrupts a run once the thread running it has used budget of
// CPU time or the deadline has passed. It checks when the budget could
// first be spent and again after whatever remains, so a run that waits
// (on the network, a lock) is not charged for the wait.
type watchdog struct {
	vm       *goja.Runtime
	tid      int
	budget   time.Duration
	cpu0     time.Duration
	deadline time.Time

	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

func (w *watchdog) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(w.budget, w.check)
}

func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	used := threadCPU(w.tid) - w.cpu0
	switch {
	case used >= w.budget:
		w.vm.Interrupt(errCPULimit)
	case !time.Now().Before(w.deadline):
		w.vm.Interrupt(errWallLimit)
	default:
		next := w.budget - used
		if left := time.Until(w.deadline); left < next {
			next = left
		}
		w.timer.Reset(max(next, time.Millisecond))
	}
}

// stop ends the watch; after it returns no interrupt can arrive. It drops
// the VM: the runtime keeps a stopped timer until it next tidies its timer
// heap, which must not keep the VM alive.
func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.timer.Stop()
	w.vm = nil
}
