package hooks

import (
	"fmt"
	goruntime "runtime"
	"time"

	"github.com/dop251/goja"
	"github.com/pocketbase/pocketbase/core"
)

// migrationBudget is how many CPU limits one migration may use.
const migrationBudget = 10

// runMigrations applies the tenant's enabled migrations that it has not
// applied yet, in order, each in its own transaction, recorded in the
// tenant's _migrations table like PocketBase's pb_migrations. They are
// this tenant's only: PocketBase's jsvm registers JS migrations in a
// process-wide list, which would run one tenant's migrations in all.
func (p *Pool) runMigrations(g *generation) {
	var list core.MigrationsList
	var pending []*Hook
	for _, h := range g.hooks {
		if h.Kind == KindMigration && h.Enabled {
			pending = append(pending, h)
		}
	}
	if len(pending) == 0 {
		return
	}
	rt, err := p.newRuntime()
	if err != nil {
		g.migrateErr = err.Error()
		return
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	tid := threadID()
	budget := migrationBudget * p.cfg.CPULimit
	var cur *Hook
	rt.vm.Set("migrate", func(up, down func(core.App) error) {
		list.Register(up, down, cur.Name)
	})
	for _, h := range pending {
		cur = h
		if err := p.runScript(rt, tid, h, budget); err != nil {
			h.LoadError = err.Error()
			g.migrateErr = fmt.Sprintf("%s: %v", h.Name, err)
			return
		}
		h.Binds = []string{"migrate"}
	}
	_, err = p.guarded(rt, tid, p.app, nil, budget*time.Duration(len(pending)), func(*goja.Runtime) (goja.Value, error) {
		applied, err := core.NewMigrationsRunner(p.app, list).Up()
		g.migrations = applied
		return nil, err
	})
	if err != nil {
		g.migrateErr = err.Error()
		p.app.Logger().Error("hook migrations failed", "source", "hooks", "error", err.Error())
	}
}
