package controlplane

import (
	"context"
	"net/http"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// SSO into a tenant's admin UI: the owner asks the platform API for a
// one-time URL on the tenant's own host; the tenant node redeems the
// ticket in it with the control plane (single use, about a minute, bound
// to that tenant) and signs the browser in as the tenant's
// platform-managed superuser. No password is typed or copied.
const (
	// SSOTicketTTL is how long an SSO URL works.
	SSOTicketTTL = time.Minute
)

func (c *ControlPlane) handleSSO(w http.ResponseWriter, r *http.Request) {
	id, err := pathTenant(r)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	t, err := c.ownedTenant(r, id)
	if err == nil && t.State != cluster.TenantActive {
		err = cluster.Errorf(cluster.ErrTenantNotFound, "tenant %s is deleted", id)
	}
	if err == nil && t.Blocked() {
		err = cluster.Errorf(cluster.ErrTenantSuspended, "tenant %s is suspended", id)
	}
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	p := principal(r)
	secret := randomSecret()
	tk := store.Ticket{Hash: cluster.HashToken(secret), Tenant: id, Actor: p.Actor(), ExpiresAt: time.Now().UTC().Add(SSOTicketTTL)}
	if p.Kind == auth.KindCustomer {
		tk.UserID = p.ID
	}
	if _, err := c.apply(r.Context(), store.CmdCreateTicket, "", store.CreateTicket{Ticket: tk}); err != nil {
		cluster.WriteError(w, err)
		return
	}
	c.audit(r, auditSSO, t.Owner, id, "")
	writeJSON(w, http.StatusCreated, map[string]any{"url": c.tenantURL(id) + cluster.SSOPath + "?ticket=" + secret, "expires_at": tk.ExpiresAt})
}

type redeemRequest struct {
	Tenant string `json:"tenant"`
	Ticket string `json:"ticket"`
}

// handleRedeemSSO is the tenant node's half: it uses up a ticket for the
// tenant whose host it arrived on.
func (c *ControlPlane) handleRedeemSSO(w http.ResponseWriter, r *http.Request) {
	var req redeemRequest
	if err := decodeJSON(w, r, c.cfg.MaxBodyBytes, &req); err != nil {
		cluster.WriteError(w, err)
		return
	}
	if err := cluster.ValidateTenantIDSyntax(req.Tenant); err != nil || req.Ticket == "" || len(req.Ticket) > 100 {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrUnauthorized, "this sign-in link is invalid"))
		return
	}
	g, err := c.RedeemTicket(r.Context(), req.Tenant, req.Ticket)
	if err != nil {
		cluster.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// RedeemTicket uses up an SSO ticket for tenant.
func (c *ControlPlane) RedeemTicket(ctx context.Context, tenant, ticket string) (cluster.SSOGrant, error) {
	res, err := c.apply(ctx, store.CmdRedeemTicket, "", store.RedeemTicket{Hash: cluster.HashToken(ticket), Tenant: tenant})
	if err != nil {
		return cluster.SSOGrant{}, err
	}
	tk := res.(store.Ticket)
	return cluster.SSOGrant{Tenant: tk.Tenant, UserID: tk.UserID, Actor: tk.Actor}, nil
}
