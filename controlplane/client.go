package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pbe/pbe/cluster"
)

// HTTPClient calls the platform API of a running pbe. It is what the pbe
// command line uses. Given several control-plane nodes it fails over
// between them: a node that cannot be reached, or answers 503 (no leader
// yet, shutting down), is skipped and the call retried on the next, with
// the same Idempotency-Key, so a retried write applies at most once. Calls
// start at the node that answered last or, when an answer names the leader
// (LeaderHeader) and the leader is one of the given nodes, at the leader:
// writes then need no forwarding, and a dead node costs one failed attempt,
// not one per call. Safe for concurrent use.
type HTTPClient struct {
	bases  []string
	token  string
	hc     *http.Client
	stream *http.Client // no overall timeout: for the watch stream
	retry  time.Duration
	first  atomic.Int32 // index in bases of the node to try first
}

// Client timing.
const (
	// DefaultClientTimeout bounds one attempt of an API call.
	DefaultClientTimeout = 60 * time.Second
	// DefaultRetryFor is how long a call keeps failing over between nodes.
	DefaultRetryFor = 15 * time.Second
	retryPause      = 200 * time.Millisecond
)

// NewHTTPClient returns a client for the API at baseURLs — one URL (such as
// http://localhost:8090) or several separated by commas — that
// authenticates with token (an operator token, or the cluster secret for
// node-to-node calls).
func NewHTTPClient(baseURLs, token string) *HTTPClient {
	var bases []string
	for _, b := range strings.Split(baseURLs, ",") {
		if b = strings.TrimSpace(b); b != "" {
			if !strings.Contains(b, "://") {
				b = "http://" + b
			}
			bases = append(bases, strings.TrimSuffix(b, "/"))
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = clientIdleConnsPerHost
	return &HTTPClient{
		bases:  bases,
		token:  token,
		hc:     &http.Client{Timeout: DefaultClientTimeout, Transport: transport},
		stream: &http.Client{Transport: transport},
		retry:  DefaultRetryFor,
	}
}

// clientIdleConnsPerHost is how many idle keep-alive connections a client
// keeps to each control-plane node (net/http's default of 2 would make
// most concurrent calls open a new connection).
const clientIdleConnsPerHost = 64

// closeBody reads what is left of a response body (a JSON value's trailing
// newline, say) and closes it, so that its connection can be reused.
func closeBody(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// WithRetry sets how long calls keep failing over (0: one attempt per node).
func (c *HTTPClient) WithRetry(d time.Duration) *HTTPClient {
	c.retry = d
	return c
}

// Tenant is a tenant as the API returns it.
type Tenant struct {
	cluster.Tenant
	URL         string                `json:"url"`
	Replication *cluster.TenantReport `json:"replication,omitempty"`
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

// do sends one request, failing over between nodes; a non-2xx answer
// becomes a *cluster.Error with the server's code and message.
func (c *HTTPClient) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	if len(c.bases) == 0 {
		return errors.New("no control-plane address given")
	}
	key := newRequestID()
	deadline := time.Now().Add(c.retry)
	start := int(c.first.Load())
	var last error
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.bases)
		retry, leader, err := c.attempt(ctx, c.bases[i], method, path, key, body, out)
		if !retry {
			c.first.Store(int32(c.indexOf(leader, i)))
			return err
		}
		last = err
		if time.Now().After(deadline) {
			return last
		}
		if attempt%len(c.bases) == len(c.bases)-1 {
			select {
			case <-ctx.Done():
				return last
			case <-time.After(retryPause):
			}
		}
	}
}

// Preferred returns the URL of the node calls try first: the leader, once
// an answer has named it, else the node that answered last.
func (c *HTTPClient) Preferred() string {
	if len(c.bases) == 0 {
		return ""
	}
	return c.bases[c.first.Load()]
}

// indexOf returns the index in bases of the node whose API is at addr
// (host:port), or def.
func (c *HTTPClient) indexOf(addr string, def int) int {
	if addr == "" {
		return def
	}
	for i, b := range c.bases {
		if strings.TrimPrefix(strings.TrimPrefix(b, "http://"), "https://") == addr {
			return i
		}
	}
	return def
}

// attempt sends the request to one node and reports whether another node
// (or a later attempt) may succeed, and the leader the answer named.
func (c *HTTPClient) attempt(ctx context.Context, base, method, path, key string, body []byte, out any) (retry bool, leader string, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return false, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(IdempotencyKeyHeader, key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return ctx.Err() == nil, "", fmt.Errorf("%s %s%s: %w", method, base, path, err)
	}
	defer closeBody(resp.Body)
	leader = resp.Header.Get(LeaderHeader)
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode == http.StatusServiceUnavailable, leader, decodeErrorBody(resp)
	}
	if out == nil {
		return false, leader, nil
	}
	return false, leader, json.NewDecoder(resp.Body).Decode(out)
}

// UpdateTenantInput changes a tenant's display name or durability.
type UpdateTenantInput struct {
	Name       *string             `json:"name,omitempty"`
	Durability *cluster.Durability `json:"durability,omitempty"`
	Version    uint64              `json:"version,omitempty"`
}

// UpdateTenant changes a tenant.
func (c *HTTPClient) UpdateTenant(ctx context.Context, id string, in UpdateTenantInput) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPatch, "/api/cp/tenants/"+url.PathEscape(id), in, &t)
	return t, err
}

// GetTenantStrong reads a tenant on the leader, after every write
// acknowledged before the call.
func (c *HTTPClient) GetTenantStrong(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id)+"?consistency=strong", nil, &t)
	return t, err
}

// RaftStatus returns the Raft status of the node that answers.
func (c *HTTPClient) RaftStatus(ctx context.Context) (RaftStatus, error) {
	var st RaftStatus
	err := c.do(ctx, http.MethodGet, "/api/cp/raft/status", nil, &st)
	return st, err
}

// RemoveNode removes a control-plane node from the cluster.
func (c *HTTPClient) RemoveNode(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/api/cp/raft/remove", RemoveRequest{ID: id}, nil)
}

// Join asks the cluster to add a node (authenticated with the cluster
// secret or an operator token).
func (c *HTTPClient) Join(ctx context.Context, req JoinRequest) error {
	return c.do(ctx, http.MethodPost, "/api/cp/raft/join", req, nil)
}

// Snapshot makes the node that answers take a Raft snapshot.
func (c *HTTPClient) Snapshot(ctx context.Context) (RaftStatus, error) {
	var st RaftStatus
	err := c.do(ctx, http.MethodPost, "/api/cp/raft/snapshot", nil, &st)
	return st, err
}

// Calls of tenant nodes and gateways (authenticated with the cluster
// secret).

// Tenant returns tenant id's record as the leader knows it.
func (c *HTTPClient) Tenant(ctx context.Context, id string) (cluster.Tenant, error) {
	var t cluster.Tenant
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id)+"?consistency=strong", nil, &t)
	return t, err
}

// Route returns where tenant id is served, placing it first if needed.
func (c *HTTPClient) Route(ctx context.Context, id string) (cluster.Route, error) {
	var r cluster.Route
	err := c.do(ctx, http.MethodPost, "/api/cp/internal/route/"+url.PathEscape(id), nil, &r)
	return r, err
}

// Assign places tenant id if it has no node and returns its record.
func (c *HTTPClient) Assign(ctx context.Context, id string) (cluster.Tenant, error) {
	if _, err := c.Route(ctx, id); err != nil {
		return cluster.Tenant{}, err
	}
	return c.Tenant(ctx, id)
}

// AdvanceEpoch moves t to a new epoch owned by node.
func (c *HTTPClient) AdvanceEpoch(ctx context.Context, t cluster.Tenant, node string) (cluster.Tenant, error) {
	var out cluster.Tenant
	err := c.do(ctx, http.MethodPost, "/api/cp/internal/tenants/"+url.PathEscape(t.ID)+"/advance", advanceRequest{Tenant: t, Node: node}, &out)
	return out, err
}

// RegisterNode records a tenant node.
func (c *HTTPClient) RegisterNode(ctx context.Context, n cluster.Node) (cluster.Node, error) {
	var out cluster.Node
	err := c.do(ctx, http.MethodPost, "/api/cp/internal/nodes", n, &out)
	return out, err
}

// Heartbeat renews a node's lease.
func (c *HTTPClient) Heartbeat(ctx context.Context, hb cluster.Heartbeat) (cluster.HeartbeatReply, error) {
	var out cluster.HeartbeatReply
	err := c.do(ctx, http.MethodPost, "/api/cp/internal/heartbeat", hb, &out)
	return out, err
}

// DrainNode asks the control plane to move every tenant off node id.
func (c *HTTPClient) DrainNode(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/api/cp/nodes/"+url.PathEscape(id)+"/drain", nil, nil)
}

// Watch streams routing events from one control-plane node to fn, in
// order, until ctx ends or the stream breaks (it returns the reason). The
// first event is a snapshot. Call it again to reconnect: the next node in
// the list is tried when one cannot be reached.
func (c *HTTPClient) Watch(ctx context.Context, fn func(cluster.WatchEvent)) error {
	var last error
	for _, base := range c.bases {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/cp/internal/watch", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := c.stream.Do(req)
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode != http.StatusOK {
			last = decodeErrorBody(resp)
			resp.Body.Close()
			continue
		}
		dec := json.NewDecoder(resp.Body)
		for {
			var ev cluster.WatchEvent
			if err := dec.Decode(&ev); err != nil {
				resp.Body.Close()
				return fmt.Errorf("watch %s: %w", base, err)
			}
			fn(ev)
		}
	}
	if last == nil {
		last = errors.New("no control-plane address given")
	}
	return fmt.Errorf("watch: %w", last)
}

// Node returns a tenant node as the leader sees it.
func (c *HTTPClient) Node(ctx context.Context, id string) (NodeView, error) {
	var n NodeView
	err := c.do(ctx, http.MethodGet, "/api/cp/nodes/"+url.PathEscape(id), nil, &n)
	return n, err
}

// Nodes lists the tenant nodes as the leader sees them.
func (c *HTTPClient) Nodes(ctx context.Context) ([]NodeView, error) {
	var out struct {
		Items []NodeView `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/cp/nodes", nil, &out)
	return out.Items, err
}

// MoveTenant moves a tenant to node (empty: the best other node).
func (c *HTTPClient) MoveTenant(ctx context.Context, id, node string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/move", moveRequest{Node: node}, &t)
	return t, err
}

// SetDomains replaces a tenant's custom domains.
func (c *HTTPClient) SetDomains(ctx context.Context, id string, domains []string) (Tenant, error) {
	var t Tenant
	err := c.do(ctx, http.MethodPut, "/api/cp/tenants/"+url.PathEscape(id)+"/domains", domainsRequest{Domains: domains}, &t)
	return t, err
}

// RedeemTicket uses up an SSO ticket for tenant (a tenant node's call).
func (c *HTTPClient) RedeemTicket(ctx context.Context, tenant, ticket string) (cluster.SSOGrant, error) {
	var g cluster.SSOGrant
	err := c.do(ctx, http.MethodPost, "/api/cp/internal/sso/redeem", redeemRequest{Tenant: tenant, Ticket: ticket}, &g)
	return g, err
}
