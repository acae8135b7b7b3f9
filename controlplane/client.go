package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pbe/pbe/cluster"
)

// HTTPClient calls the platform API of a running pbe. It is what the pbe
// command line uses. Safe for concurrent use.
type HTTPClient struct {
	base  string
	token string
	hc    *http.Client
}

// DefaultClientTimeout bounds one API call.
const DefaultClientTimeout = 60 * time.Second

// NewHTTPClient returns a client for the API at baseURL (such as
// http://localhost:8090) that authenticates with an operator token.
func NewHTTPClient(baseURL, token string) *HTTPClient {
	return &HTTPClient{
		base:  strings.TrimSuffix(baseURL, "/"),
		token: token,
		hc:    &http.Client{Timeout: DefaultClientTimeout},
	}
}

// Tenant is a tenant as the API returns it.
type Tenant struct {
	cluster.Tenant
	URL string `json:"url"`
}

// Admin is a tenant superuser to create.
type Admin struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CreateTenantInput is the body of a tenant create.
type CreateTenantInput struct {
	ID         string             `json:"id"`
	Name       string             `json:"name,omitempty"`
	Durability cluster.Durability `json:"durability,omitempty"`
	Admin      *Admin             `json:"admin,omitempty"`
}

// CreateTenant creates a tenant.
func (c *HTTPClient) CreateTenant(ctx context.Context, in CreateTenantInput) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPost, "/api/cp/tenants", in, &t)
	return t, err
}

// ListTenants lists tenants in state ("active", "deleted" or "all").
func (c *HTTPClient) ListTenants(ctx context.Context, state string) ([]Tenant, error) {
	var out struct {
		Items []Tenant `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants?state="+url.QueryEscape(state), nil, &out)
	return out.Items, err
}

// GetTenant returns one tenant.
func (c *HTTPClient) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id), nil, &t)
	return t, err
}

// DeleteTenant deletes a tenant (restorable until its purge time).
func (c *HTTPClient) DeleteTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodDelete, "/api/cp/tenants/"+url.PathEscape(id), nil, &t)
	return t, err
}

// RestoreTenant brings back a deleted tenant within its grace period.
func (c *HTTPClient) RestoreTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/restore", nil, &t)
	return t, err
}

// CreateAdmin creates a superuser in a tenant.
func (c *HTTPClient) CreateAdmin(ctx context.Context, id string, a Admin) error {
	return c.do(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/admins", a, nil)
}

// do sends one request; a non-2xx answer becomes a *cluster.Error with the
// server's code and message.
func (c *HTTPClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(IdempotencyKeyHeader, newRequestID())
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e cluster.ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) != nil || e.Code == "" {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return &cluster.Error{Code: e.Code, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
