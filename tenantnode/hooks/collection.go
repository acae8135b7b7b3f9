package hooks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dop251/goja"
	validation "github.com/go-ozzo/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
)

// The collections holding a tenant's hooks and their secrets.
const (
	hooksCollection   = "_hooks"
	secretsCollection = "_hook_secrets"
)

// Kinds of stored hook.
const (
	// KindHook is loaded on every (re)load: record hooks, routes, cron.
	KindHook = "hook"
	// KindMigration runs once per tenant, like a file of pb_migrations.
	KindMigration = "migration"
)

// maxCode bounds one hook's source (characters).
const maxCode = 1 << 20

// collectionsMigration creates _hooks and _hook_secrets in every tenant.
// It is a Go migration, registered in PocketBase's global list, and the
// same for every tenant: it runs once per tenant like PocketBase's own.
const collectionsMigration = "1764400000_pbe_hooks.go"

func init() {
	core.AppMigrations.Register(createCollections, dropCollections, collectionsMigration)
}

func createCollections(app core.App) error {
	hooks := core.NewBaseCollection(hooksCollection)
	hooks.System = true
	hooks.Fields.Add(
		&core.TextField{Name: "name", Required: true, Max: 100, Pattern: `^[A-Za-z0-9][A-Za-z0-9_.\-]*$`, System: true},
		&core.TextField{Name: "code", Max: maxCode, System: true},
		&core.BoolField{Name: "enabled", System: true},
		&core.NumberField{Name: "sort", OnlyInt: true, System: true},
		&core.SelectField{Name: "kind", Values: []string{KindHook, KindMigration}, MaxSelect: 1, System: true},
		&core.AutodateField{Name: "created", OnCreate: true, System: true},
		&core.AutodateField{Name: "updated", OnCreate: true, OnUpdate: true, System: true},
	)
	hooks.AddIndex("idx_pbe_hooks_name", true, "name", "")
	if err := app.Save(hooks); err != nil {
		return fmt.Errorf("create %s: %w", hooksCollection, err)
	}
	secrets := core.NewBaseCollection(secretsCollection)
	secrets.System = true
	secrets.Fields.Add(
		&core.TextField{Name: "name", Required: true, Max: 100, Pattern: `^[A-Za-z_][A-Za-z0-9_]*$`, System: true},
		&core.TextField{Name: "value", Max: 10000, Hidden: true, System: true},
	)
	secrets.AddIndex("idx_pbe_hook_secrets_name", true, "name", "")
	if err := app.Save(secrets); err != nil {
		return fmt.Errorf("create %s: %w", secretsCollection, err)
	}
	return nil
}

func dropCollections(app core.App) error {
	for _, name := range []string{secretsCollection, hooksCollection} {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			continue
		}
		if err := app.Delete(c); err != nil {
			return err
		}
	}
	return nil
}

// bindValidation rejects a hook whose code does not compile: the save
// answers 400 with the line, and nothing changes.
func (p *Pool) bindValidation() {
	p.app.OnRecordValidate(hooksCollection).BindFunc(func(e *core.RecordEvent) error {
		if err := checkSyntax(e.Record.GetString("name"), e.Record.GetString("code")); err != nil {
			return validation.Errors{"code": validation.NewError("validation_hook_syntax", err.Error())}
		}
		return e.Next()
	})
}

// checkSyntax compiles code as a hook or migration would be.
func checkSyntax(name, code string) error {
	if _, err := goja.Compile(name, code, false); err != nil {
		var se *goja.CompilerSyntaxError
		if errors.As(err, &se) {
			return errors.New(strings.TrimSpace(se.Error()))
		}
		return err
	}
	return nil
}
