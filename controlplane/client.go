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
	"github.com/pbe/pbe/tracing"
)

// HTTPClient calls the platform API of a running pbe. It is what the pbe
// command line uses. Given several control-plane nodes it fails over
// between them: a node that cannot be reached, or answers 503 (no leader
// yet, shutting down), is skipped and the call retried on the next, with
// the same Idempotency-Key, so a retried write applies at most once. Calls
// start at the node that answered last or, when an answer names the leader
// (LeaderHeader) and the leader is one of the given nodes, at the leader:
// writes then need no forwarding, and a dead node costs one failed attempt,
// not one per call. With tracing on, each call carries the trace context
// of its ctx (traceparent), so the control plane's span joins the
// caller's trace. Safe for concurrent use.
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

// ListTenants lists tenants in state ("active", "archived", "deleted" or
// "all"; "" for every tenant not deleted).
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

// do sends one request with in as its JSON body (none when nil), failing
// over between nodes, and decodes the answer into out (when not nil); a
// non-2xx answer becomes a *cluster.Error with the server's code and
// message.
func (c *HTTPClient) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(ctx, c.hc, method, path, in, out)
}

// doLong is do without the per-attempt timeout, for calls whose work is
// sized by a tenant's data (a restore, a backup, archiving): a timeout
// would retry work that is still running. ctx bounds it.
func (c *HTTPClient) doLong(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(ctx, c.stream, method, path, in, out)
}

// doWith is do with hc.
func (c *HTTPClient) doWith(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body *payload
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = &payload{open: func() io.Reader { return bytes.NewReader(b) }, size: int64(len(b)), contentType: "application/json"}
	}
	resp, err := c.send(ctx, hc, method, path, body)
	if err != nil {
		return err
	}
	defer closeBody(resp.Body)
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// payload is a request body that every attempt reads afresh from open.
type payload struct {
	open        func() io.Reader
	size        int64
	contentType string
}

// send sends one request with hc, failing over between nodes as do does,
// and returns the 2xx answer, whose body the caller reads and closes; any
// other answer becomes a *cluster.Error.
func (c *HTTPClient) send(ctx context.Context, hc *http.Client, method, path string, body *payload) (*http.Response, error) {
	if len(c.bases) == 0 {
		return nil, errors.New("no control-plane address given")
	}
	key := newRequestID()
	deadline := time.Now().Add(c.retry)
	start := int(c.first.Load())
	var last error
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.bases)
		resp, retry, leader, err := c.attempt(ctx, hc, c.bases[i], method, path, key, body)
		if !retry {
			c.first.Store(int32(c.indexOf(leader, i)))
			return resp, err
		}
		last = err
		if time.Now().After(deadline) {
			return nil, last
		}
		if attempt%len(c.bases) == len(c.bases)-1 {
			select {
			case <-ctx.Done():
				return nil, last
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

// attempt sends the request to one node and returns its 2xx answer, or
// reports whether another node (or a later attempt) may succeed, and the
// leader the answer named.
func (c *HTTPClient) attempt(ctx context.Context, hc *http.Client, base, method, path, key string, body *payload) (resp *http.Response, retry bool, leader string, err error) {
	var rd io.Reader
	if body != nil {
		rd = body.open()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, false, "", err
	}
	if body != nil {
		req.ContentLength = body.size
		req.Header.Set("Content-Type", body.contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(IdempotencyKeyHeader, key)
	tracing.Inject(ctx, req.Header) // the call's cp.api span joins the caller's trace
	resp, err = hc.Do(req)
	if err != nil {
		return nil, ctx.Err() == nil, "", fmt.Errorf("%s %s%s: %w", method, base, path, err)
	}
	leader = resp.Header.Get(LeaderHeader)
	if resp.StatusCode/100 != 2 {
		defer closeBody(resp.Body)
		return nil, resp.StatusCode == http.StatusServiceUnavailable, leader, decodeErrorBody(resp)
	}
	return resp, false, leader, nil
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

// Backups, restores and archiving.

// RestorePoints returns tenant id's restorable window.
func (c *HTTPClient) RestorePoints(ctx context.Context, id string) (RestorePoints, error) {
	var rp RestorePoints
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id)+"/restore-points", nil, &rp)
	return rp, err
}

// RestoreResult is the answer to a restore: the restored tenant (the new
// one, for a fork) and, for a restore in place, how to undo it.
type RestoreResult struct {
	Tenant Tenant `json:"tenant"`
	// RestoredTo is the moment restored (zero for a named backup).
	RestoredTo time.Time `json:"restored_to,omitzero"`
	// Undo, after a restore in place, holds the moment to restore to in
	// order to undo it.
	Undo *RestoreUndo `json:"undo,omitempty"`
	// Source, after a fork, is the tenant it was made from.
	Source string `json:"source,omitempty"`
}

// RestoreUndo is the moment just before a restore in place.
type RestoreUndo struct {
	Timestamp time.Time `json:"timestamp"`
	Note      string    `json:"note,omitempty"`
}

// RestoreTo restores tenant id to the moment at, in place or, when fork is
// not empty, into a new tenant of that id (the source is left alone).
func (c *HTTPClient) RestoreTo(ctx context.Context, id string, at time.Time, fork string) (RestoreResult, error) {
	var res RestoreResult
	err := c.doLong(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/pitr", pitrRequest{Timestamp: at, Fork: fork}, &res)
	return res, err
}

// Backups lists tenant id's named backups.
func (c *HTTPClient) Backups(ctx context.Context, id string) ([]BackupInfo, error) {
	var out struct {
		Items []BackupInfo `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id)+"/backups", nil, &out)
	return out.Items, err
}

// CreateBackup stores a named backup of tenant id (name "": a timestamp).
func (c *HTTPClient) CreateBackup(ctx context.Context, id, name string) (BackupInfo, error) {
	var b BackupInfo
	err := c.doLong(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/backups", backupRequest{Name: name}, &b)
	return b, err
}

// DeleteBackup deletes tenant id's named backup.
func (c *HTTPClient) DeleteBackup(ctx context.Context, id, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/cp/tenants/"+url.PathEscape(id)+"/backups/"+url.PathEscape(name), nil, nil)
}

// RestoreBackup restores tenant id's named backup in place.
func (c *HTTPClient) RestoreBackup(ctx context.Context, id, name string) (RestoreResult, error) {
	var res RestoreResult
	err := c.doLong(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/backups/"+url.PathEscape(name)+"/restore", nil, &res)
	return res, err
}

// ExportTenant writes tenant id's archive (a gzipped tar) to w as it
// arrives, and returns its size. The server builds the whole archive
// before it answers, so the call has no overall timeout: ctx bounds it. A
// stream cut short is an error (the archive's length is announced).
func (c *HTTPClient) ExportTenant(ctx context.Context, id string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, c.stream, http.MethodGet, "/api/cp/tenants/"+url.PathEscape(id)+"/export", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("export %s: %w", id, err)
	}
	return n, nil
}

// ImportTenant creates tenant id (display name name, may be empty) from
// the archive of size bytes in archive, sent as it is read (never held in
// memory); each attempt reads it again from the start. Like ExportTenant
// it has no overall timeout.
func (c *HTTPClient) ImportTenant(ctx context.Context, id, name string, archive io.ReaderAt, size int64) (Tenant, error) {
	body := &payload{
		open:        func() io.Reader { return io.NewSectionReader(archive, 0, size) },
		size:        size,
		contentType: "application/gzip",
	}
	resp, err := c.send(ctx, c.stream, http.MethodPost, "/api/cp/tenants/import?"+url.Values{"id": {id}, "name": {name}}.Encode(), body)
	if err != nil {
		return Tenant{}, err
	}
	defer closeBody(resp.Body)
	var t Tenant
	err = json.NewDecoder(resp.Body).Decode(&t)
	return t, err
}

// ArchiveTenant archives tenant id now (operators only).
func (c *HTTPClient) ArchiveTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.doLong(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/archive", nil, &t)
	return t, err
}

// UnarchiveTenant opens archived tenant id now (operators only).
func (c *HTTPClient) UnarchiveTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := c.doLong(ctx, http.MethodPost, "/api/cp/tenants/"+url.PathEscape(id)+"/unarchive", nil, &t)
	return t, err
}
