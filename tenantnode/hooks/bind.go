package hooks

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/router"
)

// bindSlot binds the i-th dispatcher of an event hook key on the app. It
// runs the current generation's i-th handler for the key, or passes the
// event on when there is none; dispatchers stay bound for the app's life
// and cost one atomic load when idle.
func (p *Pool) bindSlot(key string, i int) {
	method, tagList, _ := strings.Cut(key, "|")
	var tags []string
	if tagList != "" {
		tags = strings.Split(tagList, ",")
	}
	h := reflect.ValueOf(p.app).MethodByName(method).Call(tagsOf(tags))[0]
	bindFunc := h.MethodByName("BindFunc")
	fnType := bindFunc.Type().In(0)
	fn := reflect.MakeFunc(fnType, func(args []reflect.Value) []reflect.Value {
		e := args[0].Interface()
		var err error
		if hs := p.current().events[key]; i < len(hs) {
			_, err = p.exec(hs[i].hook, hs[i].prog, p.app, []any{e}, p.cfg.CPULimit)
		} else {
			err = e.(hook.Resolver).Next()
		}
		return []reflect.Value{reflect.ValueOf(&err).Elem()}
	})
	bindFunc.Call([]reflect.Value{fn})
}

// tagsOf converts tags for a reflective hook call.
func tagsOf(tags []string) []reflect.Value {
	vs := make([]reflect.Value, len(tags))
	for i, t := range tags {
		vs[i] = reflect.ValueOf(t)
	}
	return vs
}

// cronFunc runs the current generation's job id.
func (p *Pool) cronFunc(id string) func() {
	return func() {
		job := p.current().crons[id]
		if job == nil {
			return
		}
		if _, err := p.exec(job.h.hook, job.h.prog, p.app, nil, p.cfg.CPULimit); err != nil {
			p.app.Logger().Error("cron job failed", "source", "hooks", "job", id, "error", err.Error())
		}
	}
}

// maxUses bounds routerUse middlewares: each is a dispatcher bound on the
// router when the tenant's handler is built.
const maxUses = 8

// routeBind is one routerAdd.
type routeBind struct {
	method, path string
	h            *handler
	mws          []*middleware
}

// routeTable is a generation's custom routes, matched with Go's ServeMux
// patterns (PocketBase's own route syntax).
type routeTable struct {
	mux *http.ServeMux
	n   int
}

func newRouteTable() *routeTable { return &routeTable{mux: http.NewServeMux()} }

type routeCallKey struct{}

func (t *routeTable) add(r routeBind) (err error) {
	pattern := strings.TrimSpace(r.method + " " + r.path)
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("routerAdd %s: %v", pattern, x)
		}
	}()
	t.mux.Handle(pattern, &routeHandler{r: r})
	t.n++
	return nil
}

// routeHandler runs one custom route for the event in the request's
// context.
type routeHandler struct{ r routeBind }

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	c := req.Context().Value(routeCallKey{}).(*routeCall)
	e := c.e
	e.Request = req // carries the route's path values
	chain := &hook.Hook[*core.RequestEvent]{}
	for _, m := range h.r.mws {
		chain.Bind(c.p.handlerFunc(m))
	}
	c.err = chain.Trigger(e, func(e *core.RequestEvent) error {
		_, err := c.p.exec(h.r.h.hook, h.r.h.prog, e.App, []any{e}, c.p.cfg.CPULimit)
		return err
	})
}

type routeCall struct {
	p   *Pool
	e   *core.RequestEvent
	err error
}

// BindRouter adds the tenant's hooks to its router: the routerUse
// dispatchers, the catch-all route that serves routerAdd routes (a
// custom route never shadows one of PocketBase's), and the hooks API.
func (p *Pool) BindRouter(r *router.Router[*core.RequestEvent]) {
	for i := range maxUses {
		r.Bind(&hook.Handler[*core.RequestEvent]{
			Id: fmt.Sprintf("pbeHooksUse%d", i),
			Func: func(e *core.RequestEvent) error {
				uses := p.current().uses
				if i >= len(uses) {
					return e.Next()
				}
				return p.handlerFunc(uses[i]).Func(e)
			},
		})
	}
	r.Any("/{pbeHooksPath...}", p.serveRoute)
	p.bindAPI(r)
}

// serveRoute serves a request no built-in route matched from the current
// generation's routes.
func (p *Pool) serveRoute(e *core.RequestEvent) error {
	t := p.current().routes
	if t.n == 0 {
		return apis.NewNotFoundError("", nil)
	}
	if _, pattern := t.mux.Handler(e.Request); pattern == "" {
		return apis.NewNotFoundError("", nil)
	}
	c := &routeCall{p: p, e: e}
	req := e.Request.WithContext(context.WithValue(e.Request.Context(), routeCallKey{}, c))
	t.mux.ServeHTTP(e.Response, req)
	return c.err
}
