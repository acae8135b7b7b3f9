// Package gateway is the platform's front door: it resolves the tenant of
// every request from its Host ({tenant}.{domain}) or, where the operator
// allows it, an X-Tenant-ID header, strips the headers the platform uses
// internally, enforces the body limit, and hands the request to the tenant
// or to the platform API on the base domain.
//
// In all-in-one mode the gateway runs in the tenant node's process and
// hands tenant requests to the node's handler directly (Tenants): there is
// no proxy hop. A gateway in its own process uses Proxy as its Tenants: it
// keeps a route cache fed by the control plane's watch stream, proxies
// each request to the node that owns the tenant (authenticated with the
// cluster secret, at the routed ownership epoch), with one circuit breaker
// per node; and NewPlatformProxy forwards the base domain to the control
// plane, failing over between its nodes.
//
// Invariants:
//   - A request reaches a tenant only under an id that passed
//     cluster.ValidateTenantIDSyntax; nothing else in the Host is trusted.
//   - X-Pbe-* headers from clients never reach a node or the control plane,
//     and X-Pbe-* headers from upstream never reach a client.
//   - A request for a tenant whose route is cached makes no control-plane
//     call; a miss makes at most one call per tenant at a time, and nothing
//     polls.
//   - While a tenant moves or fails over, a client never sees a node's
//     internal 503 (not_owner, tenant_moving, no_lease, unavailable,
//     shutting_down) or a connection error: the request is held and
//     retried for up to ProxyConfig.HoldTimeout, then answered with a 503
//     JSON error and Retry-After. (A body larger than
//     ProxyConfig.MaxReplayBody is sent once: if that fails, the 503 comes
//     at once.) A tenant's own responses, 5xx included, pass through
//     untouched.
package gateway

import (
	"errors"
	"go.opentelemetry.io/otel/attribute"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
	"github.com/pbe/pbe/tracing"
)

// TenantHeader names a tenant on the base domain where the operator allows it.
const TenantHeader = "X-Tenant-ID"

// InternalHeaderPrefix starts every header the platform sets for its own
// hops; the gateway removes them from client requests.
const InternalHeaderPrefix = "X-Pbe-"

// Tenants serves requests to tenants.
type Tenants interface {
	// ServeTenant serves r as a request to tenant id.
	ServeTenant(w http.ResponseWriter, r *http.Request, id string)
}

// Config configures a gateway.
type Config struct {
	// Domain is the base domain: tenants live at {id}.{Domain}; the platform
	// API and dashboard at Domain itself.
	Domain string
	// AllowTenantHeader lets X-Tenant-ID on the base domain select a tenant.
	AllowTenantHeader bool
	// MaxBodyBytes limits request bodies (0: no limit from the gateway).
	MaxBodyBytes int64
	// Logger receives the gateway's logs.
	Logger *slog.Logger
	// Metrics records requests by status class; nil records nothing.
	Metrics *metrics.Gateway
}

// DefaultMaxBodyBytes is PocketBase's own default body limit.
const DefaultMaxBodyBytes = 32 << 20

// DefaultConfig returns the all-in-one defaults.
func DefaultConfig() Config {
	return Config{Domain: "localhost", AllowTenantHeader: true, MaxBodyBytes: DefaultMaxBodyBytes, Logger: slog.Default()}
}

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.Domain == "" || strings.ContainsAny(c.Domain, "/: ") || strings.HasPrefix(c.Domain, "."):
		return errors.New("gateway: Domain must be a host name such as example.com")
	case c.MaxBodyBytes < 0:
		return errors.New("gateway: MaxBodyBytes must not be negative")
	case c.Logger == nil:
		return errors.New("gateway: Logger is required")
	}
	return nil
}

// DomainResolver finds the tenant a custom domain serves.
type DomainResolver interface {
	// TenantForDomain returns the tenant host is a custom domain of.
	TenantForDomain(host string) (string, bool)
}

// Gateway routes requests. It is an http.Handler.
type Gateway struct {
	cfg      Config
	domain   string
	platform http.Handler
	tenants  Tenants
	domains  DomainResolver
}

// WithDomains makes the gateway serve tenants' custom domains too. Call it
// before serving.
func (g *Gateway) WithDomains(r DomainResolver) *Gateway {
	g.domains = r
	return g
}

// New returns a gateway that sends base-domain requests to platform and
// tenant requests to tenants.
func New(cfg Config, platform http.Handler, tenants Tenants) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Gateway{cfg: cfg, domain: strings.ToLower(strings.TrimSuffix(cfg.Domain, ".")), platform: platform, tenants: tenants}, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, span := tracing.StartServer(r, "gateway")
	traced := span.IsRecording()
	if g.cfg.Metrics != nil || traced {
		// One wrapper remembers the status for both.
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if sw.status != 0 && g.cfg.Metrics != nil { // 0: the client went away unanswered
				g.cfg.Metrics.Request(sw.status)
			}
			if traced {
				tracing.End(span, sw.status)
			}
		}()
		w = sw
	}
	defer span.End()
	stripInternalHeaders(r.Header)
	id, base, err := g.resolve(r)
	switch {
	case err != nil:
		cluster.WriteError(w, err)
	case base:
		// The platform API bounds its own bodies: small JSON, and tenant
		// archives up to their own, far larger, limit.
		g.platform.ServeHTTP(w, r)
	default:
		if !g.limitBody(w, r) {
			return
		}
		span.SetAttributes(attribute.String("pbe.tenant", id))
		g.tenants.ServeTenant(w, r, id)
	}
}

// resolve returns the tenant a request is for, or base=true for the
// platform itself.
func (g *Gateway) resolve(r *http.Request) (id string, base bool, err error) {
	host := hostOnly(r.Host)
	if host == g.domain || isIP(host) || (host == "" && r.Host == "") {
		hdr := r.Header.Get(TenantHeader)
		if hdr == "" {
			return "", true, nil
		}
		r.Header.Del(TenantHeader)
		id = strings.ToLower(strings.TrimSpace(hdr))
		if !g.cfg.AllowTenantHeader {
			if cluster.ValidateTenantIDSyntax(id) != nil {
				id = "{tenant}"
			}
			return "", false, cluster.Errorf(cluster.ErrInvalidInput, "the %s header is disabled on this platform; use the tenant's host name %s.%s", TenantHeader, id, g.domain)
		}
		if err := cluster.ValidateTenantIDSyntax(id); err != nil {
			return "", false, err
		}
		return id, false, nil
	}
	label, ok := strings.CutSuffix(host, "."+g.domain)
	if ok && !strings.Contains(label, ".") && cluster.ValidateTenantIDSyntax(label) == nil {
		return label, false, nil
	}
	if !ok && g.domains != nil {
		if id, found := g.domains.TenantForDomain(host); found && cluster.ValidateTenantIDSyntax(id) == nil {
			return id, false, nil
		}
	}
	return "", false, cluster.Errorf(cluster.ErrTenantNotFound, "no tenant is served at host %q", clipHost(host))
}

// hostOnly lowercases a Host header and drops its port and trailing dot.
func hostOnly(h string) string {
	h = strings.ToLower(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(h, ".")
}

func isIP(h string) bool { return net.ParseIP(h) != nil }

func clipHost(h string) string {
	if len(h) > 100 {
		return h[:100] + "..."
	}
	return h
}

func stripInternalHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, InternalHeaderPrefix) {
			delete(h, k)
		}
	}
}

// limitBody bounds a tenant request's body by MaxBodyBytes; it answers 413
// and returns false for one declared larger.
func (g *Gateway) limitBody(w http.ResponseWriter, r *http.Request) bool {
	if g.cfg.MaxBodyBytes <= 0 {
		return true
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		cluster.WriteJSONError(w, http.StatusRequestEntityTooLarge, cluster.ErrorBody{
			Code: "body_too_large", Message: "request body is larger than the limit of " + strconv.FormatInt(g.cfg.MaxBodyBytes, 10) + " bytes",
		})
		return false
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
	}
	return true
}
