package tenantnode

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"net/http"
	"os"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// ServeTenant serves r as a request to tenant id's PocketBase (API, admin
// UI, realtime), activating the tenant first if it is not active. The
// caller has resolved id from the request; it is validated again here.
func (m *Manager) ServeTenant(w http.ResponseWriter, r *http.Request, id string) {
	m.ServeTenantAt(w, r, id, 0)
}

// ServeTenantAt is ServeTenant for a caller that routed at ownership epoch
// (0: whatever this node owns). A request for an epoch this node does not
// hold gets cluster.ErrNotOwner, so the caller re-resolves the route. The
// tenant's suspension and quotas are checked before anything else sees the
// request (quota.go).
func (m *Manager) ServeTenantAt(w http.ResponseWriter, r *http.Request, id string, epoch uint64) {
	r, span := tracing.StartServer(r, "tenant.request", attribute.String("pbe.tenant", id), attribute.String("pbe.node", m.cfg.NodeID))
	defer span.End()
	stream := r.Method == http.MethodGet && r.URL.Path == "/api/realtime"
	actx, aspan := tracing.Start(r.Context(), "tenant.acquire")
	e, err := m.acquire(actx, id, epoch, stream)
	tracing.Finish(aspan, err)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the client went away
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = cluster.Errorf(cluster.ErrUnavailable, "tenant %s is still starting; retry shortly", id)
		}
		if ce, ok := cluster.AsError(err); ok {
			w.Header().Set(cluster.HeaderError, ce.Code)
		}
		cluster.WriteError(w, err)
		return
	}
	defer m.release(e, stream)
	tw := &tenantWriter{ResponseWriter: w}
	if mt := e.inst.metrics; mt != nil {
		start := time.Now()
		mt.Begin(stream)
		defer func() { mt.End(stream, tw.statusOr(http.StatusOK), time.Since(start)) }()
	}
	if !e.inst.quota.admit(tw, r, time.Now()) {
		return // suspended, or over a quota: answered
	}
	if r.URL.Path == cluster.SSOPath {
		m.serveSSO(tw, r, id, e.inst)
		return
	}
	tw.filter = true
	e.inst.handler.ServeHTTP(tw, r)
}

// CreateSuperuser creates a PocketBase superuser in tenant id, activating
// the tenant if needed. A value PocketBase refuses (e-mail taken or
// malformed, password too short) is cluster.ErrInvalidInput. Creating the
// same superuser with the same password again succeeds and changes nothing.
func (m *Manager) CreateSuperuser(ctx context.Context, id, email, password string) error {
	e, err := m.acquire(ctx, id, 0, false)
	if err != nil {
		return err
	}
	defer m.release(e, false)
	app := e.inst.app
	if existing, err := app.FindAuthRecordByEmail(core.CollectionNameSuperusers, email); err == nil {
		if existing.ValidatePassword(password) {
			return nil // a retry of the same request
		}
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant %s already has a superuser %s", id, email)
	}
	col, err := app.FindCollectionByNameOrId(core.CollectionNameSuperusers)
	if err != nil {
		return fmt.Errorf("superusers collection: %w", err)
	}
	rec := core.NewRecord(col)
	rec.SetEmail(email)
	rec.SetPassword(password)
	if err := app.Validate(rec); err != nil {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant admin: %v", err)
	}
	if err := app.Save(rec); err != nil {
		return fmt.Errorf("save superuser: %w", err)
	}
	return nil
}

// Remove stops tenant id on this node and deletes its local copy. The
// object store keeps its data.
func (m *Manager) Remove(ctx context.Context, id string) error {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return err
	}
	if _, err := m.Evict(ctx, id); err != nil {
		m.logger.Warn("final sync of a removed tenant failed", "tenant", id, "error", err)
	}
	if err := os.RemoveAll(m.paths(id).dir); err != nil {
		return fmt.Errorf("remove local copy of %s: %w", id, err)
	}
	m.logger.Info("tenant removed from node", "tenant", id)
	return nil
}
