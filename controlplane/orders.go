package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// NodeOrders is how the control plane tells a tenant node what to do with
// one of its tenants. In all-in-one mode it is the local node itself;
// otherwise it is HTTP to the node's internal API (HTTPOrders).
type NodeOrders interface {
	// Release makes the node stop serving the tenant at epoch, finish its
	// in-flight requests and make its final sync; it returns once the
	// tenant's replica is complete in the object store. The node refuses
	// the tenant at that epoch afterwards.
	Release(ctx context.Context, n cluster.Node, tenant string, epoch uint64) error
	// Activate makes the node open the tenant now (restoring it), so the
	// first request does not wait for it.
	Activate(ctx context.Context, n cluster.Node, tenant string) error
	// CreateSuperuser creates a PocketBase superuser in the tenant; it is
	// idempotent for the same e-mail and password.
	CreateSuperuser(ctx context.Context, n cluster.Node, tenant, email, password string) error
	// Remove stops the tenant on the node and deletes its local copy.
	Remove(ctx context.Context, n cluster.Node, tenant string) error
	// UpdateTenant gives the node serving t (at t.Epoch) the tenant's new
	// record: its durability applies from the next write, its suspension
	// and quotas from the next request.
	UpdateTenant(ctx context.Context, n cluster.Node, t cluster.Tenant) error
}

// HTTPOrders sends orders to nodes' internal APIs, authenticated with the
// cluster secret and, with tracing on, carrying the trace context of the
// order's ctx.
type HTTPOrders struct {
	secret string
	hc     *http.Client
}

// OrderTimeout bounds one order; a release waits for a final sync.
const OrderTimeout = 2 * time.Minute

// NewHTTPOrders returns orders sent over HTTP with the cluster secret.
func NewHTTPOrders(secret string) *HTTPOrders {
	return &HTTPOrders{secret: secret, hc: &http.Client{Timeout: OrderTimeout}}
}

// ReleaseRequest is the body of a release order.
type ReleaseRequest struct {
	Epoch uint64 `json:"epoch"`
}

// AdminRequest is the body of a superuser order.
type AdminRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (o *HTTPOrders) Release(ctx context.Context, n cluster.Node, tenant string, epoch uint64) error {
	return o.post(ctx, n, tenant, "release", ReleaseRequest{Epoch: epoch})
}

func (o *HTTPOrders) Activate(ctx context.Context, n cluster.Node, tenant string) error {
	return o.post(ctx, n, tenant, "activate", nil)
}

func (o *HTTPOrders) CreateSuperuser(ctx context.Context, n cluster.Node, tenant, email, password string) error {
	return o.post(ctx, n, tenant, "superusers", AdminRequest{Email: email, Password: password})
}

func (o *HTTPOrders) UpdateTenant(ctx context.Context, n cluster.Node, t cluster.Tenant) error {
	return o.post(ctx, n, t.ID, "update", t)
}

func (o *HTTPOrders) Remove(ctx context.Context, n cluster.Node, tenant string) error {
	return o.post(ctx, n, tenant, "remove", nil)
}

func (o *HTTPOrders) post(ctx context.Context, n cluster.Node, tenant, order string, body any) error {
	b, _ := json.Marshal(body)
	u := "http://" + n.Addr + "/internal/tenants/" + url.PathEscape(tenant) + "/" + order
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(cluster.HeaderSecret, o.secret)
	tracing.Inject(ctx, req.Header) // the node's work joins the trace of the call that ordered it
	resp, err := o.hc.Do(req)
	if err != nil {
		return cluster.Errorf(cluster.ErrUnavailable, "tenant node %s unreachable for %s of %s: %v", n.ID, order, tenant, err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s of %s on node %s: %w", order, tenant, n.ID, decodeErrorBody(resp))
	}
	return nil
}
