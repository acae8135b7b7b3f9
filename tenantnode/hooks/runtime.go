package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/plugins/jsvm"
	"github.com/pocketbase/pocketbase/tools/template"
)

// A runtime is one goja VM with PocketBase's JavaScript API, made safe for
// tenant code by harden. A runtime runs one hook at a time; nested runs on
// the same goroutine (a hook that saves a record firing another hook)
// reuse it.
type runtime struct {
	vm *goja.Runtime
	// deadline is the wall-clock end of the current run; sleep() never
	// sleeps past it.
	deadline time.Time
	// secrets is the generation whose secrets process.env holds.
	secrets *generation
	// allocated is what its runs have allocated in all (memory.go).
	allocated int64
}

// The donor makes runtimes. jsvm binds PocketBase's JavaScript API (the
// Record and Collection constructors, $apis, $security, $dbx, the error
// types and the rest) only inside its Register, and hands each VM it
// makes to Config.OnInit. Registering it on a never-bootstrapped app whose
// hooks directory holds one empty script makes exactly one VM, its loader,
// with every binding in place; its hook functions are bound to that app
// and harden replaces them. Each Register leaves two small handlers on the
// donor's app, which is replaced every donorRenew runtimes.
var donor struct {
	mu    sync.Mutex
	app   *core.BaseApp
	made  int
	dir   string // holds hooks/donor.pb.js and an empty migrations dir
	types string
}

const donorRenew = 256

// donorDirPrefix names the donor's directory, one per process: the
// process's id follows it.
const donorDirPrefix = "pbe-jsvm-"

// removeStaleDonorDirs removes the donor directories of processes that no
// longer run (a process cannot remove its own on every way out).
func removeStaleDonorDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), donorDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), donorDirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil && p.Signal(syscall.Signal(0)) == nil {
			continue // still running
		}
		_ = os.RemoveAll(d)
	}
}

// newVM returns a VM with jsvm's bindings, not yet hardened.
func newVM() (*goja.Runtime, error) {
	donor.mu.Lock()
	defer donor.mu.Unlock()
	if donor.dir == "" {
		removeStaleDonorDirs()
		dir := filepath.Join(os.TempDir(), donorDirPrefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "hooks", "donor.pb.js"), []byte("// pbe\n"), 0o600); err != nil {
			return nil, err
		}
		donor.dir = dir
	}
	if donor.app == nil || donor.made >= donorRenew {
		donor.app = core.NewBaseApp(core.BaseAppConfig{DataDir: filepath.Join(donor.dir, "pb_data")})
		donor.made = 0
	}
	// jsvm keeps the Config (and so OnInit) for the donor app's life: the
	// VM is handed over through a holder emptied at once, or the donor
	// would keep every runtime it ever made alive.
	holder := &struct{ vm *goja.Runtime }{}
	err := jsvm.Register(donor.app, jsvm.Config{
		HooksDir:      filepath.Join(donor.dir, "hooks"),
		MigrationsDir: filepath.Join(donor.dir, "migrations"),
		TypesDir:      filepath.Join(donor.dir, "types"),
		HooksPoolSize: 0,
		OnInit:        func(r *goja.Runtime) { holder.vm = r },
	})
	vm := holder.vm
	holder.vm = nil
	donor.made++
	if err != nil {
		return nil, fmt.Errorf("javascript runtime: %w", err)
	}
	if vm == nil {
		return nil, errors.New("javascript runtime: jsvm made no VM")
	}
	return vm, nil
}

// appHookMethods are the names of core.App's hook methods ("OnRecordCreate",
// ...), found once by reflection as jsvm does.
var appHookMethods = sync.OnceValue(func() []reflect.Method {
	t := reflect.TypeOf((*core.App)(nil)).Elem()
	var ms []reflect.Method
	for i := range t.NumMethod() {
		if m := t.Method(i); strings.HasPrefix(m.Name, "On") {
			ms = append(ms, m)
		}
	}
	return ms
})

// jsName is jsvm's JavaScript name of a Go method: OnRecordCreate →
// onRecordCreate.
func jsName(goName string) string {
	return strings.ToLower(goName[:1]) + goName[1:]
}

// notAvailable returns a function that throws, saying what is refused.
func notAvailable(vm *goja.Runtime, name, why string) func(goja.FunctionCall) goja.Value {
	return func(goja.FunctionCall) goja.Value {
		panic(vm.NewGoError(fmt.Errorf("%s is not available to tenant hooks: %s", name, why)))
	}
}

// osRefused are $os's members other than getenv; every one reaches the
// process or the node's file system.
var osRefused = []string{"exec", "cmd", "exit", "dirFS", "stat", "readFile", "writeFile", "readDir", "tempDir",
	"truncate", "getwd", "mkdir", "mkdirAll", "rename", "remove", "removeAll", "openRoot", "openInRoot"}

// harden replaces every binding through which tenant code could reach the
// process, the node's files, its network or another tenant:
//
//   - $os keeps getenv, which reads the tenant's own secrets; exit, cmd,
//     exec and the file functions throw. process.env is the secrets too.
//   - $http.send and $filesystem.fileFromURL go through the SSRF-safe client.
//   - $filesystem.s3, .local and .fileFromPath, $filepath.glob, .walk and
//     .walkDir, $apis.static and $template.loadFiles/loadFS (which read
//     node paths) throw.
//   - require throws: hooks stored in the database have no module files.
//   - console writes to the tenant's own log.
//   - sleep() never sleeps past the run's deadline.
//   - the hook-binding functions jsvm bound to the donor app are removed
//     (the loader binds its own), and the app's own On* hooks and cron are
//     hidden (sandboxMapper).
func (p *Pool) harden(rt *runtime) {
	vm := rt.vm
	vm.SetFieldNameMapper(sandboxMapper{})
	const noFiles = "hooks have no access to the node's files"

	osObj := vm.NewObject()
	_ = osObj.Set("args", []string{})
	_ = osObj.Set("getenv", func(name string) string { return p.current().secrets[name] })
	for _, name := range osRefused {
		_ = osObj.Set(name, notAvailable(vm, "$os."+name, "hooks cannot run programs, leave the process or touch the node's files"))
	}
	vm.Set("$os", osObj)
	rt.setSecrets(p.current())

	fsObj := vm.NewObject()
	if orig, ok := vm.Get("$filesystem").(*goja.Object); ok {
		for _, name := range []string{"fileFromBytes", "fileFromMultipart"} {
			_ = fsObj.Set(name, orig.Get(name))
		}
	}
	_ = fsObj.Set("fileFromURL", p.client.fileFromURL)
	for _, name := range []string{"s3", "local", "fileFromPath"} {
		_ = fsObj.Set(name, notAvailable(vm, "$filesystem."+name, noFiles))
	}
	vm.Set("$filesystem", fsObj)

	httpObj := vm.NewObject()
	_ = httpObj.Set("send", p.client.send)
	vm.Set("$http", httpObj)

	if fpObj, ok := vm.Get("$filepath").(*goja.Object); ok {
		for _, name := range []string{"glob", "walk", "walkDir"} {
			_ = fpObj.Set(name, notAvailable(vm, "$filepath."+name, noFiles))
		}
	}
	if apisObj, ok := vm.Get("$apis").(*goja.Object); ok {
		_ = apisObj.Set("static", notAvailable(vm, "$apis.static", noFiles))
	}
	registry := template.NewRegistry()
	tplObj := vm.NewObject()
	_ = tplObj.Set("loadString", registry.LoadString)
	_ = tplObj.Set("loadFiles", notAvailable(vm, "$template.loadFiles", noFiles+"; use $template.loadString"))
	_ = tplObj.Set("loadFS", notAvailable(vm, "$template.loadFS", noFiles+"; use $template.loadString"))
	vm.Set("$template", tplObj)

	vm.Set("require", notAvailable(vm, "require", "a hook stored in the database is one script; put shared code in it"))
	// A cobra command parses the process's own arguments, which can hold
	// the platform's credentials.
	vm.Set("Command", func(goja.ConstructorCall) *goja.Object {
		panic(vm.NewGoError(errors.New("Command is not available to tenant hooks: hooks cannot define or run commands of the node")))
	})
	vm.Set("__hooks", "")
	vm.Set("console", p.console(vm))
	vm.Set("sleep", func(ms int64) {
		d := time.Duration(ms) * time.Millisecond
		if left := time.Until(rt.deadline); d > left {
			d = left
		}
		if d > 0 {
			time.Sleep(d)
		}
	})

	for _, m := range appHookMethods() {
		vm.Set(jsName(m.Name), goja.Undefined())
	}
	for _, name := range []string{"routerAdd", "routerUse", "cronAdd", "cronRemove", "migrate"} {
		vm.Set(name, notAvailable(vm, name, "it can only be called at the top level of a hook"))
	}
	vm.Set("$app", p.app)
}

// setSecrets makes process.env the secrets of g, once per generation.
func (rt *runtime) setSecrets(g *generation) {
	if rt.secrets == g {
		return
	}
	env := rt.vm.NewObject()
	for k, v := range g.secrets {
		_ = env.Set(k, v)
	}
	proc := rt.vm.NewObject()
	_ = proc.Set("env", env)
	rt.vm.Set("process", proc)
	rt.secrets = g
}

// console returns a console object writing to the tenant's log (its
// PocketBase logs, shown in its admin UI).
func (p *Pool) console(vm *goja.Runtime) *goja.Object {
	c := vm.NewObject()
	logf := func(level string) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			parts := make([]string, len(call.Arguments))
			for i, a := range call.Arguments {
				parts[i] = consoleString(a)
			}
			msg := strings.Join(parts, " ")
			lg := p.app.Logger().With("source", "hooks")
			switch level {
			case "error":
				lg.Error(msg)
			case "warn":
				lg.Warn(msg)
			case "debug":
				lg.Debug(msg)
			default:
				lg.Info(msg)
			}
			return goja.Undefined()
		}
	}
	for _, l := range []string{"log", "info", "warn", "error", "debug"} {
		_ = c.Set(l, logf(l))
	}
	return c
}

// appInterface is core.App.
var appInterface = reflect.TypeOf((*core.App)(nil)).Elem()

// hiddenAppMethods are methods of the app JavaScript does not see besides
// its On* hooks: its cron (a job bound there would run a JavaScript
// function later, on another goroutine, outside any runtime's limits), its
// lifecycle, and UnsafeWithoutHooks (a copy of the app without the hooks
// that refuse PocketBase's backup restore, a restart and mail to private
// addresses).
var hiddenAppMethods = map[string]bool{"Cron": true, "Restart": true, "Bootstrap": true, "ResetBootstrapState": true,
	"UnsafeWithoutHooks": true}

// dbxPkg and sqlPkg are the packages of the database handles the app
// hands out.
const (
	dbxPkg = "github.com/pocketbase/dbx"
	sqlPkg = "database/sql"
)

// sandboxMapper is jsvm's name mapping, except that JavaScript does not
// see:
//
//   - the app's On* hooks and hiddenAppMethods. A JavaScript function bound
//     to an app hook directly would stay bound across reloads and run on
//     whatever goroutine fires it, concurrently with the runtime it belongs
//     to, with no CPU limit; hooks bind through onRecordCreate() and the
//     other top-level functions instead.
//   - a mail client's OnSend, through which the platform's check of the
//     SMTP server (and its refusal of sendmail) could be unbound.
//   - what lies under the query builder: dbx.DB's DB and Close and its
//     fields (log functions JavaScript could set would run on other
//     goroutines), database/sql's Driver, Conn and Raw, and everything of
//     the SQLite driver. The driver opens any file the process can reach,
//     another tenant's database among them, on connections the platform
//     has not limited.
type sandboxMapper struct{ jsvm.FieldMapper }

func (m sandboxMapper) MethodName(t reflect.Type, method reflect.Method) string {
	if t.Implements(appInterface) && (strings.HasPrefix(method.Name, "On") || hiddenAppMethods[method.Name]) {
		return ""
	}
	if hiddenMethod(t, method.Name) {
		return ""
	}
	return m.FieldMapper.MethodName(t, method)
}

func (m sandboxMapper) FieldName(t reflect.Type, f reflect.StructField) string {
	if pkgOf(t) == dbxPkg && typeName(t) == "DB" || strings.HasPrefix(pkgOf(t), "modernc.org/") {
		return ""
	}
	return m.FieldMapper.FieldName(t, f)
}

// hiddenMethod reports whether JavaScript must not see method name of t
// (see sandboxMapper).
func hiddenMethod(t reflect.Type, name string) bool {
	switch pkg := pkgOf(t); {
	case name == "OnSend":
		return true
	case pkg == dbxPkg && typeName(t) == "DB":
		return name == "DB" || name == "Close"
	case pkg == sqlPkg:
		return name == "Driver" || name == "Conn" || name == "Raw"
	case strings.HasPrefix(pkg, "modernc.org/"):
		return true
	}
	return false
}

// pkgOf and typeName are the package path and name of t, or of what t
// points to.
func pkgOf(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath()
}

func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// consoleString prints a console argument as browsers do: strings as they
// are, objects and arrays as JSON.
func consoleString(v goja.Value) string {
	if o, ok := v.(*goja.Object); ok {
		if _, isFn := goja.AssertFunction(o); !isFn {
			if b, err := json.Marshal(o.Export()); err == nil {
				return string(b)
			}
		}
	}
	return v.String()
}
