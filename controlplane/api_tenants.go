package controlplane

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Tenant admin password limits (PocketBase's superuser password rules;
// bcrypt reads at most 72 bytes).
const (
	minPasswordLen = 8
	maxPasswordLen = 71
	maxNameLen     = 100
)

// tenantView is a tenant as the API shows it to operators and customers:
// its state is the shown one (cluster.Tenant.ShownState).
type tenantView struct {
	cluster.Tenant
	URL string `json:"url"`
	// Replication is what the tenant's node last reported about it, when
	// it is active there; only the leader knows it (ask with
	// ?consistency=strong).
	Replication *cluster.TenantReport `json:"replication,omitempty"`
}

func (c *ControlPlane) view(t cluster.Tenant) tenantView {
	v := tenantView{Tenant: t, URL: c.tenantURL(t.ID)}
	v.State = t.ShownState()
	if r, ok := c.fleet.tenantReport(t.Node, t.ID); ok && r.Epoch == t.Epoch {
		v.Replication = &r
	}
	return v
}

type adminRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type createTenantRequest struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Durability cluster.Durability `json:"durability"`
	Admin      *adminRequest      `json:"admin"`
	// Owner (operators only) makes the tenant a customer's, within their
	// quota; a customer's tenants are always their own.
	Owner string `json:"owner"`

	// audit is recorded with the tenant's creation.
	audit []cluster.AuditEntry
}

func (req *createTenantRequest) validate() error {
	if req.ID == "" {
		return cluster.Errorf(cluster.ErrInvalidTenantID, "field \"id\" is required: a DNS label such as \"acme\"")
	}
	if err := cluster.ValidateTenantID(req.ID); err != nil {
		return err
	}
	if err := validateName(req.Name); err != nil {
		return err
	}
	switch req.Durability {
	case "", cluster.DurabilityAsync, cluster.DurabilitySync:
	default:
		return cluster.Errorf(cluster.ErrInvalidInput, "field \"durability\" must be \"async\" or \"sync\"")
	}
	if req.Admin != nil {
		return req.Admin.validate("admin.")
	}
	return nil
}

func validateName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameLen {
		return cluster.Errorf(cluster.ErrInvalidInput, "field \"name\" must be valid text of at most %d characters", maxNameLen)
	}
	return nil
}

// validate checks the admin's fields; field names in messages get prefix.
func (a *adminRequest) validate(prefix string) error {
	addr, err := mail.ParseAddress(a.Email)
	if err != nil || addr.Address != a.Email || addr.Name != "" {
		return cluster.Errorf(cluster.ErrInvalidInput, "field \"%semail\" must be a plain e-mail address such as admin@example.com", prefix)
	}
	if n := len(a.Password); n < minPasswordLen || n > maxPasswordLen {
		return cluster.Errorf(cluster.ErrInvalidInput, "field \"%spassword\" must be %d to %d bytes long", prefix, minPasswordLen, maxPasswordLen)
	}
	return nil
}

func (c *ControlPlane) handleCreateTenant(w http.ResponseWriter, r *http.Request) {
	var req createTenantRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := req.validate(); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := c.checkCreator(r, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	req.audit = []cluster.AuditEntry{auditEntry(r, auditTenantCreate, req.Owner, req.ID, "")}
	t, err := c.CreateTenant(r.Context(), r.Header.Get(IdempotencyKeyHeader), req)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	w.Header().Set("Location", "/api/cp/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, c.view(t))
}

// checkCreator makes a customer's tenant their own and checks that they
// may create one; an operator may name an existing owner.
func (c *ControlPlane) checkCreator(r *http.Request, req *createTenantRequest) error {
	p := principal(r)
	if p.Kind != auth.KindCustomer {
		if req.Owner != "" {
			if _, err := c.store.User(req.Owner); err != nil {
				return cluster.Errorf(cluster.ErrInvalidInput, "field \"owner\": no customer %q", clipPath(req.Owner))
			}
		}
		return nil
	}
	if req.Owner != "" && req.Owner != p.ID {
		return cluster.Errorf(cluster.ErrForbidden, "field \"owner\" is for operators; leave it out")
	}
	u, err := c.store.User(p.ID)
	if err != nil {
		return err
	}
	if !u.Verified {
		return cluster.Errorf(cluster.ErrForbidden, "verify your e-mail address before creating tenants (POST /api/cp/auth/verify/resend sends a new link)")
	}
	req.Owner = p.ID
	return nil
}

// CreateTenant registers a validated tenant and, when asked, creates its
// first superuser: the tenant is then placed on a node at once. If the
// superuser cannot be created the tenant is removed again: the caller sees
// one error and nothing changed. Without an admin the tenant is placed on
// its first request.
func (c *ControlPlane) CreateTenant(ctx context.Context, requestID string, req createTenantRequest) (cluster.Tenant, error) {
	durability := req.Durability
	if durability == "" {
		durability = cluster.DurabilityAsync
	}
	res, err := c.applyAudited(ctx, store.CmdCreateTenant, requestID, store.CreateTenant{Tenant: cluster.Tenant{
		ID: req.ID, Name: req.Name, Durability: durability, Owner: req.Owner,
	}}, req.audit...)
	if err != nil {
		return cluster.Tenant{}, err
	}
	t := res.(cluster.Tenant)
	c.logger.Info("tenant created", "tenant", t.ID)
	if req.Admin == nil {
		return t, nil
	}
	if t, err = c.createSuperuser(ctx, t.ID, req.Admin.Email, req.Admin.Password); err != nil {
		c.undoCreate(t)
		return cluster.Tenant{}, err
	}
	return t, nil
}

// createSuperuser places the tenant if needed and has its node create a
// PocketBase superuser.
func (c *ControlPlane) createSuperuser(ctx context.Context, id, email, password string) (cluster.Tenant, error) {
	t, err := c.Assign(ctx, id)
	if err != nil {
		return t, err
	}
	n, err := c.store.Node(t.Node)
	if err == nil {
		err = c.orders.CreateSuperuser(ctx, n, id, email, password)
	}
	if err != nil {
		if _, ok := cluster.AsError(err); !ok {
			c.logger.Error("create tenant admin", "tenant", id, "error", err)
			err = cluster.Errorf(cluster.ErrUnavailable, "the node of tenant %s could not create its admin; retry shortly", id)
		}
		return t, err
	}
	return t, nil
}

// undoCreate removes a tenant whose creation failed half-way.
func (c *ControlPlane) undoCreate(t cluster.Tenant) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
	defer cancel()
	c.removeFromNode(ctx, t)
	res, err := c.apply(ctx, store.CmdDeleteTenant, "", store.DeleteTenant{ID: t.ID, PurgeAfter: time.Now().UTC()})
	if err == nil {
		err = c.purge(ctx, res.(cluster.Tenant))
	}
	if err != nil {
		c.logger.Error("undo tenant create", "tenant", t.ID, "error", err)
	}
}

// removeFromNode tells the tenant's node, if any, to stop it and drop its
// local copy. Failures are logged: the node also learns from its lease
// renewals that it no longer owns the tenant.
func (c *ControlPlane) removeFromNode(ctx context.Context, t cluster.Tenant) {
	if t.Node == "" {
		return
	}
	n, err := c.store.Node(t.Node)
	if err == nil {
		err = c.orders.Remove(ctx, n, t.ID)
	}
	if err != nil {
		c.logger.Warn("remove tenant from its node", "tenant", t.ID, "tenant_node", t.Node, "error", err)
	}
}

// handleListTenants lists tenants in the shown state ?state= (active,
// archived, deleted or all; by default every tenant not deleted).
func (c *ControlPlane) handleListTenants(w http.ResponseWriter, r *http.Request) {
	var f store.TenantFilter
	want := cluster.TenantState(r.URL.Query().Get("state"))
	switch want {
	case "", cluster.TenantActive, cluster.TenantArchived:
		f.State = cluster.TenantActive
	case cluster.TenantDeleted:
		f.State = cluster.TenantDeleted
	case "all":
	default:
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "query parameter \"state\" must be active, archived, deleted or all"))
		return
	}
	var ts []cluster.Tenant
	var err error
	if p := principal(r); p.Kind == auth.KindCustomer {
		ts, err = c.store.TenantsOf(p.ID)
	} else {
		ts, err = c.store.Tenants(f)
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	items := make([]tenantView, 0, len(ts))
	for _, t := range ts {
		if f.State != "" && t.State != f.State {
			continue
		}
		if want == "" || want == "all" || t.ShownState() == want {
			items = append(items, c.view(t))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": len(items)})
}

// pathTenant validates the {id} of a tenant route.
func pathTenant(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return "", err
	}
	return id, nil
}

func (c *ControlPlane) handleGetTenant(w http.ResponseWriter, r *http.Request) {
	t, err := c.pathOwnedTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if principal(r).Kind == auth.KindNode {
		// A tenant node opens an archived tenant because its stored state
		// is active: it gets the record as stored.
		writeJSON(w, http.StatusOK, t)
		return
	}
	writeJSON(w, http.StatusOK, c.view(t))
}

type updateTenantRequest struct {
	Name       *string             `json:"name"`
	Durability *cluster.Durability `json:"durability"`
	// Suspended and Quota are for operators.
	Suspended *bool                `json:"suspended"`
	Quota     *cluster.TenantQuota `json:"quota"`
	// Backups schedules named backups ({"every_seconds": 0} removes it).
	Backups *cluster.BackupPolicy `json:"backups"`
	// Version, if set, must be the tenant's current version (optimistic
	// concurrency): a stale one gets 409.
	Version uint64 `json:"version"`
}

func (c *ControlPlane) handleUpdateTenant(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	if _, err := c.ownedTenant(r, id); err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req updateTenantRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.Name == nil && req.Durability == nil && req.Suspended == nil && req.Quota == nil && req.Backups == nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `send at least one of "name", "durability", "backups", "suspended" and "quota"`))
		return
	}
	if b := req.Backups; b != nil && b.EverySeconds != 0 {
		minEvery := int64(1)
		if principal(r).Kind == auth.KindCustomer {
			minEvery = int64(MinCustomerBackupInterval / time.Second)
		}
		if b.EverySeconds < minEvery || b.Keep < 1 || b.Keep > 1000 {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `"backups" needs "every_seconds" of at least %d and "keep" of 1 to 1000 (or "every_seconds": 0 to stop)`, minEvery))
			return
		}
	}
	if (req.Suspended != nil || req.Quota != nil) && principal(r).Kind == auth.KindCustomer {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrForbidden, `"suspended" and "quota" are set by the operator; ask for more quota with POST /api/cp/quota-requests`))
		return
	}
	if q := req.Quota; q != nil && (q.StorageBytes < 0 || q.RequestsPerDay < 0) {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `"quota" values must not be negative (0 means unlimited)`))
		return
	}
	if req.Name != nil {
		if err := validateName(*req.Name); err != nil {
			cluster.WriteError(w, err)
			return
		}
	}
	if d := req.Durability; d != nil && *d != cluster.DurabilityAsync && *d != cluster.DurabilitySync {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "durability" must be "async" or "sync"`))
		return
	}
	res, err := c.apply(r.Context(), store.CmdUpdateTenant, r.Header.Get(IdempotencyKeyHeader), store.UpdateTenant{
		ID: id, ExpectedVersion: req.Version, Name: req.Name, Durability: req.Durability,
		Suspended: req.Suspended, Quota: req.Quota, Backups: req.Backups,
	})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t := res.(cluster.Tenant)
	if req.Suspended != nil {
		action := auditTenantUnsuspend
		if *req.Suspended {
			action = auditTenantSuspend
		}
		c.audit(r, action, t.Owner, t.ID, "")
	}
	if req.Durability != nil || req.Suspended != nil || req.Quota != nil {
		c.pushTenant(r.Context(), t)
	}
	writeJSON(w, http.StatusOK, c.view(t))
}

type domainsRequest struct {
	Domains []string `json:"domains"`
}

// handleSetDomains replaces a tenant's custom domains.
func (c *ControlPlane) handleSetDomains(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req domainsRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if req.Domains == nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, `field "domains" is required (an empty list removes every custom domain)`))
		return
	}
	for i, d := range req.Domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		req.Domains[i] = d
		if err := cluster.ValidateDomain(d); err != nil {
			cluster.WriteError(w, err)
			return
		}
		if base := c.cfg.Domain; d == base || strings.HasSuffix(d, "."+base) {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "domain %s is under the platform's domain %s; tenants get {id}.%s already", d, base, base))
			return
		}
	}
	res, err := c.apply(r.Context(), store.CmdSetDomains, r.Header.Get(IdempotencyKeyHeader), store.SetDomains{ID: id, Domains: req.Domains})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.logger.Info("tenant domains set", "tenant", id, "domains", req.Domains)
	writeJSON(w, http.StatusOK, c.view(res.(cluster.Tenant)))
}

func (c *ControlPlane) handleDeleteTenant(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	old, err := c.ownedTenant(r, id)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	res, err := c.applyAudited(r.Context(), store.CmdDeleteTenant, r.Header.Get(IdempotencyKeyHeader), store.DeleteTenant{
		ID: id, PurgeAfter: time.Now().UTC().Add(c.cfg.DeleteGrace),
	}, auditEntry(r, auditTenantDelete, old.Owner, id, ""))
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t := res.(cluster.Tenant)
	c.logger.Info("tenant deleted", "tenant", id, "purge_after", t.PurgeAfter)
	c.removeFromNode(r.Context(), t)
	writeJSON(w, http.StatusOK, c.view(t))
}

func (c *ControlPlane) handleRestoreTenant(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	res, err := c.apply(r.Context(), store.CmdRestoreTenant, r.Header.Get(IdempotencyKeyHeader), store.RestoreTenant{ID: id})
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.logger.Info("tenant restored", "tenant", id)
	writeJSON(w, http.StatusOK, c.view(res.(cluster.Tenant)))
}

func (c *ControlPlane) handleCreateAdmin(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	var req adminRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := req.validate(""); err != nil {
		cluster.WriteError(w, err)
		return
	}
	t, err := c.store.Tenant(id)
	if err == nil && t.State != cluster.TenantActive {
		err = cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s is deleted; restore it first", id)
	}
	if err == nil {
		_, err = c.createSuperuser(r.Context(), id, req.Email, req.Password)
	}
	if err != nil {
		if _, ok := cluster.AsError(err); !ok && !errors.Is(err, context.Canceled) {
			c.logger.Error("create tenant admin", "tenant", id, "error", err)
		}
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"tenant": id, "email": req.Email})
}
