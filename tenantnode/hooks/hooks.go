// Package hooks runs each tenant's server-side JavaScript (record hooks,
// custom routes, cron jobs and migrations in PocketBase's hook dialect)
// from the tenant's own database, safely beside hundreds of other tenants
// in one process.
//
// The code lives in the system collection _hooks of the tenant's data.db
// (name, code, enabled, sort, kind) and its secrets in _hook_secrets. A
// collection in data.db rather than a separate hooks.db: the code is
// replicated, restored to a point in time, exported and imported together
// with the data it was written against (a restore never pairs old data
// with new hooks), no further Litestream database costs memory per tenant,
// and PocketBase's own API and admin UI edit it with superuser-only rules.
//
// PocketBase's jsvm plugin provides the JavaScript API; this package loads
// the code itself so that it can be replaced while the tenant serves: a
// change to _hooks builds a new generation (every enabled hook run once in
// a loader VM that records what it binds) and swaps it in atomically. The
// Go side binds, once per hook and tag, a dispatcher that runs the current
// generation's handlers; custom routes are served by one catch-all route
// that matches the generation's own routing table; cron jobs are added and
// removed by id. A hook that fails to load is reported (name, line) and
// left out; the others keep running.
//
// Isolation: tenant code gets no process, file-system or environment
// access (harden), outbound HTTP only to public addresses (safeClient),
// SQLite ATTACH refused and the database driver under the query builder
// hidden (so a hook cannot open another tenant's database), a CPU-time
// budget per run and a bounded pool of runtimes
// per tenant, created on demand and dropped with the tenant.
package hooks

import (
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
)

// Config bounds what tenant code may use.
type Config struct {
	// CPULimit is the CPU time one run of a hook may use before it is
	// interrupted (migrations get ten times as much).
	CPULimit time.Duration
	// CPUPerMinute is the CPU time all of a tenant's hook runs may use in
	// one minute; past it further runs are refused (429) until the minute
	// ends, so a tenant cannot keep its runtimes spinning and crowd out its
	// neighbours.
	CPUPerMinute time.Duration
	// WallLimit is the longest one run may take, waiting included.
	WallLimit time.Duration
	// Runtimes is how many hooks of one tenant may run at once; each is a
	// JavaScript VM of a few hundred KiB, made when first needed.
	Runtimes int
	// MemoryPerRun is how much one run may allocate (as estimated by
	// memory.go) before it is interrupted; the runtime is then dropped
	// with whatever the run kept in it.
	MemoryPerRun int64
	// RuntimeMemory is how much a runtime's runs may allocate in all
	// before the runtime is dropped and, when next needed, made anew. What
	// tenant code keeps in a runtime's globals between runs is bounded by
	// it; PocketBase runs hooks on a pool of runtimes too, so code cannot
	// count on its globals lasting.
	RuntimeMemory int64
	// HTTPTimeout and HTTPMaxBytes bound $http.send and fileFromURL.
	HTTPTimeout  time.Duration
	HTTPMaxBytes int64
	// HTTPAllow lists address ranges hooks may reach even though they are
	// not public (for example a partner service on a private network).
	HTTPAllow []netip.Prefix
	// HTTPDeny lists further ranges hooks may not reach: the platform's
	// own addresses when they are public.
	HTTPDeny []netip.Prefix
}

// Defaults.
const (
	DefaultCPULimit      = time.Second
	DefaultCPUPerMinute  = 20 * time.Second
	DefaultWallLimit     = 30 * time.Second
	DefaultRuntimes      = 4
	DefaultMemoryPerRun  = 256 << 20
	DefaultRuntimeMemory = 64 << 20
	DefaultHTTPTimeout   = 10 * time.Second
	DefaultHTTPMaxBytes  = 10 << 20
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		CPULimit:      DefaultCPULimit,
		CPUPerMinute:  DefaultCPUPerMinute,
		WallLimit:     DefaultWallLimit,
		Runtimes:      DefaultRuntimes,
		MemoryPerRun:  DefaultMemoryPerRun,
		RuntimeMemory: DefaultRuntimeMemory,
		HTTPTimeout:   DefaultHTTPTimeout,
		HTTPMaxBytes:  DefaultHTTPMaxBytes,
	}
}

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.CPULimit <= 0:
		return errors.New("hooks: CPULimit must be positive")
	case c.CPUPerMinute < c.CPULimit:
		return errors.New("hooks: CPUPerMinute must be at least CPULimit")
	case c.WallLimit < c.CPULimit:
		return errors.New("hooks: WallLimit must be at least CPULimit")
	case c.Runtimes < 1:
		return errors.New("hooks: Runtimes must be at least 1")
	case c.MemoryPerRun <= 0:
		return errors.New("hooks: MemoryPerRun must be positive")
	case c.RuntimeMemory <= 0:
		return errors.New("hooks: RuntimeMemory must be positive")
	case c.HTTPTimeout <= 0:
		return errors.New("hooks: HTTPTimeout must be positive")
	case c.HTTPMaxBytes <= 0:
		return errors.New("hooks: HTTPMaxBytes must be positive")
	}
	return nil
}

// Pool is one tenant's hooks: its current generation and its runtimes.
type Pool struct {
	app    core.App
	cfg    Config
	logger *slog.Logger
	client *safeClient

	gen atomic.Pointer[generation]
	// reloading serialises Reload, so a generation read earlier is never
	// installed over one read later.
	reloading sync.Mutex

	// runtimes: idle ones wait in idle; made counts all that exist.
	idle chan *runtime
	mu   sync.Mutex
	made int
	// running maps the OS thread of a run in progress to its runtime, so
	// that a nested run (same goroutine, locked to that thread) reuses it.
	running map[int]*runtime

	// cpu is what the tenant's runs have used this minute.
	cpu cpuWindow
	// totals count every run since the pool was attached (for metrics).
	totals struct{ runs, errors, cpuNanos, recycled atomic.Int64 }

	// slots[key] is how many dispatchers are bound for an event hook key.
	slots map[string]int
	// crons are the job ids the current generation has added.
	crons map[string]bool

	reload  chan struct{}
	done    chan struct{}
	stopped sync.WaitGroup
	closed  atomic.Bool
}

// Attach gives app its hooks: it loads the current ones, binds what they
// need and reloads whenever _hooks or _hook_secrets change. app must be
// bootstrapped (its migrations run); call BindRouter when building its
// router and Close when it stops.
func Attach(app core.App, cfg Config, logger *slog.Logger) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	setRegexpTimeout(cfg.CPULimit)
	p := &Pool{
		app:     app,
		cfg:     cfg,
		logger:  logger,
		client:  newSafeClient(cfg),
		idle:    make(chan *runtime, cfg.Runtimes),
		running: map[int]*runtime{},
		slots:   map[string]int{},
		crons:   map[string]bool{},
		reload:  make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	p.gen.Store(&generation{})
	p.guardRestart()
	p.bindValidation()
	p.watch()
	p.Reload()
	p.stopped.Add(1)
	go p.reloader()
	return p, nil
}

// Close stops reloading and drops the runtimes.
func (p *Pool) Close() {
	if p.closed.Swap(true) {
		return
	}
	close(p.done)
	p.stopped.Wait()
	for _, id := range p.cronIDs() {
		p.app.Cron().Remove(id)
	}
	for {
		select {
		case <-p.idle:
		default:
			return
		}
	}
}

func (p *Pool) cronIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.crons))
	for id := range p.crons {
		ids = append(ids, id)
	}
	return ids
}

func (p *Pool) current() *generation { return p.gen.Load() }

// errRestart refuses app.Restart, an execve of the whole process.
var errRestart = errors.New("restarting is not available to a tenant: it would restart every tenant of the node")

// guardRestart refuses $app.restart(): PocketBase's Restart ends in an
// execve of the process, taking down every tenant of the node.
func (p *Pool) guardRestart() {
	p.app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		if e.IsRestart {
			return errRestart
		}
		return e.Next()
	})
}

// watch schedules a reload after every committed change to the hooks or
// their secrets.
func (p *Pool) watch() {
	schedule := func(e *core.ModelEvent) error {
		err := e.Next()
		p.scheduleReload()
		return err
	}
	for _, name := range []string{hooksCollection, secretsCollection} {
		p.app.OnModelAfterCreateSuccess(name).BindFunc(schedule)
		p.app.OnModelAfterUpdateSuccess(name).BindFunc(schedule)
		p.app.OnModelAfterDeleteSuccess(name).BindFunc(schedule)
	}
}

func (p *Pool) scheduleReload() {
	select {
	case p.reload <- struct{}{}:
	default:
	}
}

// reloadDebounce lets a burst of edits (an import) become one reload.
const reloadDebounce = 20 * time.Millisecond

func (p *Pool) reloader() {
	defer p.stopped.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.reload:
		}
		select {
		case <-p.done:
			return
		case <-time.After(reloadDebounce):
		}
		p.Reload()
	}
}

// Hook is one stored hook as loaded, with what its runs have cost.
type Hook struct {
	ID      string
	Name    string
	Kind    string
	Enabled bool
	Sort    int
	code    string
	// LoadError says why the hook is not running (with its line), or is
	// empty.
	LoadError string
	// Binds lists what the hook bound: "onRecordCreateRequest(posts)",
	// "GET /api/hello", "cron nightly (0 3 * * *)".
	Binds []string
	// stats carry over to the next generation while the hook keeps its
	// name.
	stats *runStats
}

// runStats are aggregated in memory: no database write per run.
type runStats struct {
	runs, errors, nanos atomic.Int64
	mu                  sync.Mutex
	lastError           string
	lastErrorAt         time.Time
}

func (s *runStats) record(p *Pool, d time.Duration, err error) {
	p.totals.runs.Add(1)
	s.runs.Add(1)
	s.nanos.Add(int64(d))
	if err != nil {
		s.errors.Add(1)
		p.totals.errors.Add(1)
		s.mu.Lock()
		s.lastError = err.Error()
		s.lastErrorAt = time.Now().UTC()
		s.mu.Unlock()
	}
}

// generation is one loaded set of hooks, replaced as a whole.
type generation struct {
	seq     uint64
	loaded  time.Time
	took    time.Duration
	hooks   []*Hook
	events  map[string][]*handler
	routes  *routeTable
	uses    []*middleware
	crons   map[string]*cronJob
	secrets map[string]string
	// migrations lists the migrations this load applied.
	migrations []string
	migrateErr string
}

// handler is one bound JavaScript function, compiled to run on any
// runtime.
type handler struct {
	hook *Hook
	prog *goja.Program
}

type cronJob struct {
	expr string
	h    *handler
}

// Reload builds a new generation from the tenant's database and swaps it
// in: new handlers serve the next event, removed ones stop. It returns
// the new generation's sequence number.
func (p *Pool) Reload() uint64 {
	p.reloading.Lock()
	defer p.reloading.Unlock()
	start := time.Now()
	old := p.current()
	g := &generation{
		seq:     old.seq + 1,
		events:  map[string][]*handler{},
		routes:  newRouteTable(),
		crons:   map[string]*cronJob{},
		secrets: map[string]string{},
	}
	hooks, secrets, err := readHooks(p.app)
	if err != nil {
		p.logger.Error("hooks: reading the tenant's hooks failed", "error", err)
		return old.seq
	}
	g.secrets = secrets
	g.hooks = hooks
	prev := map[string]*runStats{}
	for _, h := range old.hooks {
		prev[h.Name] = h.stats
	}
	for _, h := range hooks {
		if h.stats = prev[h.Name]; h.stats == nil {
			h.stats = &runStats{}
		}
	}
	if len(hooks) > 0 {
		p.runMigrations(g)
		p.load(g)
	}
	g.loaded = time.Now().UTC()
	g.took = time.Since(start)
	p.install(g)
	return g.seq
}

// load runs every enabled hook once in a loader VM and keeps what each
// one binds; a hook that fails keeps nothing and reports why.
func (p *Pool) load(g *generation) {
	rt, err := p.newRuntime()
	if err != nil {
		for _, h := range g.hooks {
			if h.Enabled && h.Kind == KindHook {
				h.LoadError = err.Error()
			}
		}
		return
	}
	l := &loader{p: p, g: g, rt: rt}
	l.bind()
	for _, h := range g.hooks {
		if !h.Enabled || h.Kind != KindHook {
			continue
		}
		if err := l.run(h); err != nil {
			h.LoadError = err.Error()
			h.Binds = nil
			p.app.Logger().Error("hook failed to load", "source", "hooks", "hook", h.Name, "error", h.LoadError)
		}
	}
}

// install makes g current: it binds dispatchers for event keys that have
// more handlers than before, adds and removes cron jobs.
func (p *Pool) install(g *generation) {
	p.mu.Lock()
	for key, hs := range g.events {
		for i := p.slots[key]; i < len(hs); i++ {
			p.bindSlot(key, i)
		}
		if len(hs) > p.slots[key] {
			p.slots[key] = len(hs)
		}
	}
	p.gen.Store(g)
	old := p.crons
	p.crons = map[string]bool{}
	for id := range g.crons {
		p.crons[id] = true
	}
	p.mu.Unlock()
	for id, job := range g.crons {
		if err := p.app.Cron().Add(id, job.expr, p.cronFunc(id)); err != nil {
			// The loader checked the expression; this is not expected.
			p.logger.Error("hooks: adding a cron job failed", "job", id, "error", err)
		}
	}
	for id := range old {
		if g.crons[id] == nil {
			p.app.Cron().Remove(id)
		}
	}
}

// Status is what GET /api/pbe/hooks returns.
type Status struct {
	Generation uint64       `json:"generation"`
	LoadedAt   time.Time    `json:"loadedAt"`
	LoadMillis float64      `json:"loadMillis"`
	Runtimes   int          `json:"runtimes"`
	Migrations []string     `json:"migrations,omitempty"`
	MigrateErr string       `json:"migrationError,omitempty"`
	Hooks      []HookStatus `json:"hooks"`
}

// HookStatus is one hook's state and aggregated runs.
type HookStatus struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Enabled     bool       `json:"enabled"`
	Loaded      bool       `json:"loaded"`
	Error       string     `json:"error,omitempty"`
	Binds       []string   `json:"binds"`
	Runs        int64      `json:"runs"`
	Errors      int64      `json:"errors"`
	TotalMillis float64    `json:"totalMillis"`
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
}

// Totals are a pool's runs since it was attached.
type Totals struct {
	Runs, Errors int64
	CPU          time.Duration
	Runtimes     int
	// Recycled counts runtimes dropped for what their runs allocated.
	Recycled int64
}

// Totals returns the pool's counters, for metrics.
func (p *Pool) Totals() Totals {
	p.mu.Lock()
	made := p.made
	p.mu.Unlock()
	return Totals{Runs: p.totals.runs.Load(), Errors: p.totals.errors.Load(), CPU: time.Duration(p.totals.cpuNanos.Load()), Runtimes: made,
		Recycled: p.totals.recycled.Load()}
}

// Status reports the current generation.
func (p *Pool) Status() Status {
	g := p.current()
	s := Status{Generation: g.seq, LoadedAt: g.loaded, LoadMillis: float64(g.took.Microseconds()) / 1000,
		Runtimes: p.Totals().Runtimes, Migrations: g.migrations, MigrateErr: g.migrateErr, Hooks: []HookStatus{}}
	for _, h := range g.hooks {
		hs := HookStatus{ID: h.ID, Name: h.Name, Kind: h.Kind, Enabled: h.Enabled, Error: h.LoadError,
			Binds: h.Binds, Runs: h.stats.runs.Load(), Errors: h.stats.errors.Load(),
			TotalMillis: float64(h.stats.nanos.Load()) / 1e6}
		hs.Loaded = h.Enabled && h.Kind == KindHook && h.LoadError == ""
		if hs.Binds == nil {
			hs.Binds = []string{}
		}
		h.stats.mu.Lock()
		if h.stats.lastError != "" {
			at := h.stats.lastErrorAt
			hs.LastError, hs.LastErrorAt = h.stats.lastError, &at
		}
		h.stats.mu.Unlock()
		s.Hooks = append(s.Hooks, hs)
	}
	return s
}

// readHooks reads the tenant's hooks (by sort, then name) and secrets.
func readHooks(app core.App) ([]*Hook, map[string]string, error) {
	secrets := map[string]string{}
	recs, err := app.FindAllRecords(secretsCollection)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range recs {
		secrets[r.GetString("name")] = r.GetString("value")
	}
	recs, err = app.FindAllRecords(hooksCollection)
	if err != nil {
		return nil, nil, err
	}
	hooks := make([]*Hook, 0, len(recs))
	for _, r := range recs {
		kind := r.GetString("kind")
		if kind == "" {
			kind = KindHook
		}
		hooks = append(hooks, &Hook{ID: r.Id, Name: r.GetString("name"), Kind: kind,
			Enabled: r.GetBool("enabled"), Sort: r.GetInt("sort"), code: r.GetString("code")})
	}
	sort.SliceStable(hooks, func(i, j int) bool {
		if hooks[i].Sort != hooks[j].Sort {
			return hooks[i].Sort < hooks[j].Sort
		}
		return hooks[i].Name < hooks[j].Name
	})
	return hooks, secrets, nil
}

// eventKey names an event hook and its tags.
func eventKey(method string, tags []string) string {
	return method + "|" + strings.Join(tags, ",")
}
