package hooks

import (
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/router"
)

// bindAPI adds the tenant's hooks API (superusers only):
//
//	GET  /api/pbe/hooks         the loaded generation: each hook's state, error and runs
//	POST /api/pbe/hooks/import  pb_hooks and pb_migrations files, stored once
func (p *Pool) bindAPI(r *router.Router[*core.RequestEvent]) {
	g := r.Group("/api/pbe/hooks").Bind(apis.RequireSuperuserAuth())
	g.GET("", func(e *core.RequestEvent) error {
		return e.JSON(http.StatusOK, p.Status())
	})
	g.POST("/import", p.importHandler)
}

// ImportFile is one file of an import.
type ImportFile struct {
	Name string `json:"name"`
	Code string `json:"code"`
}

// ImportRequest is the body of POST /api/pbe/hooks/import: the files of a
// pb_hooks directory (*.pb.js, loaded as hooks) and of a pb_migrations
// directory (*.js, run once as migrations).
type ImportRequest struct {
	Hooks      []ImportFile `json:"hooks"`
	Migrations []ImportFile `json:"migrations"`
}

func (p *Pool) importHandler(e *core.RequestEvent) error {
	var req ImportRequest
	if err := e.BindBody(&req); err != nil {
		return apis.NewBadRequestError("The body must be JSON: {\"hooks\": [{\"name\", \"code\"}], \"migrations\": [...]}.", err)
	}
	if len(req.Hooks)+len(req.Migrations) == 0 {
		return apis.NewBadRequestError("Nothing to import: give at least one file in hooks or migrations.", nil)
	}
	if err := Import(p.app, req); err != nil {
		return err
	}
	p.Reload()
	return e.JSON(http.StatusOK, p.Status())
}

// Import stores the files as hooks, in one transaction: a file that does
// not compile fails the whole import (400, naming the file and line) and
// changes nothing. A file whose name is already stored replaces that
// hook's code.
func Import(app core.App, req ImportRequest) error {
	files := make([]ImportFile, 0, len(req.Hooks)+len(req.Migrations))
	kinds := map[string]string{}
	for _, f := range req.Hooks {
		f.Name = path.Base(f.Name)
		if !strings.HasSuffix(f.Name, ".js") && !strings.HasSuffix(f.Name, ".ts") {
			return apis.NewBadRequestError(fmt.Sprintf("Hook file %q: only .pb.js files can be imported.", f.Name), nil)
		}
		files = append(files, f)
		kinds[f.Name] = KindHook
	}
	for _, f := range req.Migrations {
		f.Name = path.Base(f.Name)
		if _, dup := kinds[f.Name]; dup {
			return apis.NewBadRequestError(fmt.Sprintf("File %q is given twice.", f.Name), nil)
		}
		files = append(files, f)
		kinds[f.Name] = KindMigration
	}
	for _, f := range files {
		if err := checkSyntax(f.Name, f.Code); err != nil {
			return apis.NewBadRequestError(fmt.Sprintf("File %q does not compile: %v", f.Name, err), nil)
		}
	}
	col, err := app.FindCollectionByNameOrId(hooksCollection)
	if err != nil {
		return err
	}
	return app.RunInTransaction(func(tx core.App) error {
		for i, f := range files {
			rec, err := tx.FindFirstRecordByData(col, "name", f.Name)
			if err != nil {
				rec = core.NewRecord(col)
				rec.Set("name", f.Name)
				rec.Set("enabled", true)
				rec.Set("sort", (i+1)*10)
			}
			rec.Set("code", f.Code)
			rec.Set("kind", kinds[f.Name])
			if err := tx.Save(rec); err != nil {
				return apis.NewBadRequestError(fmt.Sprintf("File %q could not be stored: %v", f.Name, err), err)
			}
		}
		return nil
	})
}
