package tenantnode

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// maxOrderBody bounds the body of an order from the control plane.
const maxOrderBody = 64 << 10

// Handler is the node's internal API, for a node that runs in its own
// process: tenant requests proxied by gateways (HeaderTenant names the
// tenant, HeaderEpoch the epoch the gateway routed at) and orders from the
// control plane under /internal/ (each a "tenant.order" span in the
// caller's trace). Every request must carry the cluster
// secret in HeaderSecret. Health and metrics are the caller's to serve in
// front of it, for requests that name no tenant.
func (m *Manager) Handler(secret string) http.Handler {
	orders := http.NewServeMux()
	orders.HandleFunc("POST /internal/tenants/{id}/release", m.handleRelease)
	orders.HandleFunc("POST /internal/tenants/{id}/activate", m.handleActivate)
	orders.HandleFunc("POST /internal/tenants/{id}/superusers", m.handleSuperuser)
	orders.HandleFunc("POST /internal/tenants/{id}/remove", m.handleRemove)
	orders.HandleFunc("POST /internal/tenants/{id}/update", m.handleUpdate)
	traced := tracing.Handler("tenant.order", orders)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isSecret(secret, r.Header.Get(cluster.HeaderSecret)) {
			w.Header().Set(cluster.HeaderError, cluster.ErrUnauthorized.Code)
			cluster.WriteError(w, cluster.Errorf(cluster.ErrUnauthorized, "this is a tenant node's internal API: missing or wrong cluster secret"))
			return
		}
		id := r.Header.Get(cluster.HeaderTenant)
		if id == "" {
			traced.ServeHTTP(w, r)
			return
		}
		epoch, err := strconv.ParseUint(r.Header.Get(cluster.HeaderEpoch), 10, 64)
		if err != nil {
			w.Header().Set(cluster.HeaderError, cluster.ErrInvalidInput.Code)
			cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "missing or malformed %s", cluster.HeaderEpoch))
			return
		}
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Pbe-") {
				r.Header.Del(k)
			}
		}
		m.ServeTenantAt(w, r, id, epoch)
	})
}

func (m *Manager) handleRelease(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Epoch uint64 `json:"epoch"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOrderBody)).Decode(&req); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "release needs {\"epoch\": n}"))
		return
	}
	if err := m.Release(r.Context(), r.PathValue("id"), req.Epoch); err != nil {
		cluster.WriteError(w, asUnavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"released": r.PathValue("id")})
}

// handleUpdate takes a tenant's changed registry record (durability,
// suspension, quota) to the tenant if it is active here.
func (m *Manager) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var t cluster.Tenant
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOrderBody)).Decode(&t); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "update needs the tenant's record as JSON"))
		return
	}
	if t.ID != r.PathValue("id") {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "the record's id %q is not the tenant of the path", t.ID))
		return
	}
	changed, err := m.UpdateTenant(r.Context(), t)
	if err != nil {
		cluster.WriteError(w, asUnavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"changed": changed})
}

func (m *Manager) handleActivate(w http.ResponseWriter, r *http.Request) {
	if err := m.Activate(r.Context(), r.PathValue("id")); err != nil {
		cluster.WriteError(w, asUnavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"active": r.PathValue("id")})
}

func (m *Manager) handleSuperuser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOrderBody)).Decode(&req); err != nil {
		cluster.WriteError(w, cluster.Errorf(cluster.ErrInvalidInput, "superuser needs {\"email\", \"password\"}"))
		return
	}
	if err := m.CreateSuperuser(r.Context(), r.PathValue("id"), req.Email, req.Password); err != nil {
		cluster.WriteError(w, asUnavailable(err))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"email": req.Email})
}

func (m *Manager) handleRemove(w http.ResponseWriter, r *http.Request) {
	if err := m.Remove(r.Context(), r.PathValue("id")); err != nil {
		cluster.WriteError(w, asUnavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("id")})
}

// asUnavailable keeps platform errors and reports any other cause as a
// retryable unavailability, without its details.
func asUnavailable(err error) error {
	if _, ok := cluster.AsError(err); ok {
		return err
	}
	return cluster.Errorf(cluster.ErrUnavailable, "the tenant node could not do that now: %v", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// isSecret compares in constant time; an empty secret matches nothing.
func isSecret(secret, got string) bool {
	return secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(got)) == 1
}
