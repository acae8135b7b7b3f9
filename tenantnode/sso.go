package tenantnode

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbe/pbe/cluster"
)

// SSO into a tenant's admin UI. The control plane hands the tenant's owner
// a one-time URL on the tenant's own host (cluster.SSOPath?ticket=...).
// The node redeems the ticket with the control plane, which checks it is
// unused, unexpired and for this tenant, and uses it up. The node then
// signs the browser in as the tenant's platform-managed superuser: it
// mints a PocketBase auth token for that record and serves a page, on the
// tenant's origin, that stores the token where the admin UI keeps its
// session and opens /_/. No password is typed, stored or copied: the
// superuser's password is random and never leaves the node.

// TicketRedeemer is the control-plane call SSO needs.
type TicketRedeemer interface {
	RedeemTicket(ctx context.Context, tenant, ticket string) (cluster.SSOGrant, error)
}

// Platform superuser of every tenant.
const (
	platformSuperuserEmail = "platform@pbe.invalid"
	// ssoSessionTTL is how long the admin UI session SSO opens lasts.
	ssoSessionTTL = 2 * time.Hour
)

var ssoPage = template.Must(template.New("sso").Parse(`<!doctype html>
<meta charset="utf-8"><title>Signing in…</title>
<script nonce="{{.Nonce}}">
localStorage.setItem("__pb_superuser_auth__", {{.Auth}});
location.replace("/_/");
</script>
<noscript>Signing in to the admin UI needs JavaScript.</noscript>
`))

var ssoFailPage = template.Must(template.New("ssofail").Parse(`<!doctype html>
<meta charset="utf-8"><title>Sign-in link not valid</title>
<p>{{.}}</p>
`))

// serveSSO handles a request to cluster.SSOPath on tenant id's host.
func (m *Manager) serveSSO(w http.ResponseWriter, r *http.Request, id string, inst *instance) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet {
		h.Set("Allow", http.MethodGet)
		cluster.WriteJSONError(w, http.StatusMethodNotAllowed, cluster.ErrorBody{Code: "method_not_allowed", Message: "open the sign-in link with GET"})
		return
	}
	redeemer, ok := m.cp.(TicketRedeemer)
	ticket := r.URL.Query().Get("ticket")
	if !ok || ticket == "" || len(ticket) > 100 {
		ssoFail(w, http.StatusUnauthorized, "This sign-in link is not valid. Open the tenant from the dashboard again.")
		return
	}
	grant, err := redeemer.RedeemTicket(r.Context(), id, ticket)
	if err != nil {
		status, msg := cluster.HTTPStatus(err), "This sign-in link is invalid, used or expired. Open the tenant from the dashboard again."
		if status >= 500 {
			msg = "Signing in is not possible right now; retry in a moment."
		}
		if !errors.Is(err, cluster.ErrUnauthorized) {
			m.logger.Warn("redeem SSO ticket", "tenant", id, "error", err)
		}
		ssoFail(w, status, msg)
		return
	}
	if grant.Tenant != id {
		ssoFail(w, http.StatusUnauthorized, "This sign-in link is for another tenant.")
		return
	}
	rec, err := platformSuperuser(inst.app)
	var token string
	if err == nil {
		token, err = rec.NewStaticAuthToken(ssoSessionTTL)
	}
	var authJSON []byte
	if err == nil {
		authJSON, err = json.Marshal(map[string]any{"token": token, "record": rec})
	}
	if err != nil {
		m.logger.Error("SSO sign-in", "tenant", id, "error", err)
		ssoFail(w, http.StatusInternalServerError, "Signing in failed; retry in a moment.")
		return
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	n := base64.RawStdEncoding.EncodeToString(nonce)
	h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; script-src 'nonce-%s'", n))
	h.Set("Content-Type", "text/html; charset=utf-8")
	m.logger.Info("tenant admin SSO", "tenant", id, "actor", grant.Actor)
	_ = ssoPage.Execute(w, map[string]any{"Nonce": n, "Auth": string(authJSON)})
}

func ssoFail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = ssoFailPage.Execute(w, msg)
}

// platformSuperuser returns the tenant's platform-managed superuser,
// creating it (with a random password nobody knows) the first time.
func platformSuperuser(app core.App) (*core.Record, error) {
	if rec, err := app.FindAuthRecordByEmail(core.CollectionNameSuperusers, platformSuperuserEmail); err == nil {
		return rec, nil
	}
	col, err := app.FindCollectionByNameOrId(core.CollectionNameSuperusers)
	if err != nil {
		return nil, fmt.Errorf("superusers collection: %w", err)
	}
	pw := make([]byte, 32)
	_, _ = rand.Read(pw)
	rec := core.NewRecord(col)
	rec.SetEmail(platformSuperuserEmail)
	rec.SetPassword(base64.RawURLEncoding.EncodeToString(pw)[:40])
	if err := app.Save(rec); err != nil {
		return nil, fmt.Errorf("create the platform superuser: %w", err)
	}
	return rec, nil
}
