package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Events: GET /api/cp/events streams the registry's event log as
// server-sent events (Accept: text/event-stream), resumable with
// Last-Event-ID or ?after=; without that Accept it answers one JSON page.
// Operators see every event; a customer sees the events of their own
// account and tenants.

const (
	// eventsPage bounds the events read at once.
	eventsPage = 500
	// sseKeepAlive is how often an idle stream gets a comment, so proxies
	// keep it open.
	sseKeepAlive = 15 * time.Second
)

var eventIDPattern = regexp.MustCompile(`^[0-9]{20}-[0-9]{4}$`)

// eventFilter reads the request's filter: ?after= (or Last-Event-ID),
// ?types=tenant.created,node.*, ?limit=.
func (c *ControlPlane) eventFilter(r *http.Request) (store.EventFilter, error) {
	q := r.URL.Query()
	f := store.EventFilter{After: q.Get("after"), Limit: eventsPage}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		f.After = id
	}
	if f.After != "" && !eventIDPattern.MatchString(f.After) {
		return f, cluster.Errorf(cluster.ErrInvalidInput, "event id %q is not one this API gave (20 digits, a hyphen, 4 digits)", clipPath(f.After))
	}
	if t := q.Get("types"); t != "" {
		f.Types = strings.Split(t, ",")
		if len(f.Types) > 50 {
			return f, cluster.Errorf(cluster.ErrInvalidInput, "query parameter \"types\" lists more than 50 types")
		}
	}
	if q.Has("limit") {
		n, err := listLimit(r, eventsPage)
		if err != nil {
			return f, err
		}
		f.Limit = n
	}
	if p := principal(r); p.Kind == auth.KindCustomer {
		owned := c.ownerOf(p.ID)
		f.Keep = func(e cluster.Event) bool { return e.User == p.ID || e.Tenant != "" && owned(e.Tenant) }
	}
	return f, nil
}

// ownerOf reports whether user owns tenant (or did, for a purged one whose
// events name the user).
func (c *ControlPlane) ownerOf(user string) func(string) bool {
	return func(tenant string) bool {
		t, err := c.store.Tenant(tenant)
		return err == nil && t.Owner == user
	}
}

func (c *ControlPlane) handleEvents(w http.ResponseWriter, r *http.Request) {
	f, err := c.eventFilter(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		es, last, err := c.store.Events(f)
		if err != nil {
			cluster.WriteError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": es, "last_id": last})
		return
	}
	c.streamEvents(w, r, f)
}

// streamEvents sends the events after f.After, then each new one as it is
// applied, until the client goes away or the node stops.
func (c *ControlPlane) streamEvents(w http.ResponseWriter, r *http.Request, f store.EventFilter) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	if f.After == "" && r.URL.Query().Get("after") == "" {
		// A new subscriber starts from now; ?after= of an old id replays.
		last, err := c.store.LastEventID()
		if err != nil {
			cluster.WriteError(w, err)
			return
		}
		f.After = last
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n: events after %q\n\n", f.After)
	_ = rc.Flush()
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		changed := c.store.EventsChanged()
		for {
			es, last, err := c.store.Events(f)
			if err != nil {
				c.logger.Warn("read events", "error", err)
				return
			}
			for _, e := range es {
				b, _ := json.Marshal(e)
				fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
			}
			if len(es) > 0 {
				if err := rc.Flush(); err != nil {
					return
				}
			}
			read := last != f.After
			f.After = last
			if len(es) < f.Limit || !read {
				break
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-c.quit:
			return
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			if err := rc.Flush(); err != nil {
				return
			}
		case <-changed:
		}
	}
}
