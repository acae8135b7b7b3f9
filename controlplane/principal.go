package controlplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Who may call a platform API route.
const (
	accessOperator = iota // operator tokens only
	accessCaller          // operators and customers
	accessNode            // the cluster secret, operators and customers
)

// guard authenticates a request and lets it through when its principal has
// the access level; customers get 403 on operator routes.
func (c *ControlPlane) guard(level int, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if level == accessNode {
			if tok, ok := auth.BearerToken(r); ok && auth.IsClusterSecret(c.cfg.ClusterSecret, tok) {
				h(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Kind: auth.KindNode})))
				return
			}
		}
		p, err := c.Authenticate(r)
		if err != nil {
			if errors.Is(err, cluster.ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pbe"`)
			}
			cluster.WriteError(w, err)
			return
		}
		if level == accessOperator && p.Kind != auth.KindOperator {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrForbidden, "%s %s is for operators; customers cannot call it", r.Method, clipPath(r.URL.Path)))
			return
		}
		h(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// Authenticate resolves the bearer credential: an operator token (pbe_...)
// or a customer's access token, whose session must still exist and whose
// user must exist and not be suspended. A credential that passed is
// remembered until it expires or the store's AuthGeneration moves (a
// session ended, an account or a token changed), so a client's repeated
// calls cost a map lookup.
func (c *ControlPlane) Authenticate(r *http.Request) (auth.Principal, error) {
	tok, ok := auth.BearerToken(r)
	if !ok {
		return auth.Principal{}, cluster.Errorf(cluster.ErrUnauthorized, "missing credentials: send Authorization: Bearer <token>")
	}
	gen := c.store.AuthGeneration()
	if e, ok := c.authCache.Get(tok); ok && e.gen == gen && time.Now().Before(e.until) {
		return e.p, nil
	}
	p, until, err := c.authenticate(r, tok)
	if err == nil {
		c.authCache.Add(tok, cachedAuth{p: p, gen: gen, until: until})
	}
	return p, err
}

// cachedAuth is a credential that passed Authenticate.
type cachedAuth struct {
	p     auth.Principal
	gen   uint64
	until time.Time
}

// authCacheSize bounds the credentials Authenticate remembers.
const authCacheSize = 16384

// operatorCacheTTL bounds how long an operator token is remembered (it
// does not expire by itself).
const operatorCacheTTL = time.Minute

func (c *ControlPlane) authenticate(r *http.Request, tok string) (auth.Principal, time.Time, error) {
	if strings.HasPrefix(tok, cluster.TokenPrefix) {
		p, err := auth.Authenticate(r, c.store.TokenByHash)
		return p, time.Now().Add(operatorCacheTTL), err
	}
	claims, err := c.verifyAccess(tok)
	if err != nil {
		return auth.Principal{}, time.Time{}, cluster.Errorf(cluster.ErrUnauthorized, "invalid or expired access token; log in again or refresh it")
	}
	sess, err := c.store.Session(claims.SessionID)
	if err != nil || sess.UserID != claims.Subject || !sess.ExpiresAt.After(time.Now()) {
		if err != nil && !errors.Is(err, cluster.ErrNotFound) {
			return auth.Principal{}, time.Time{}, err
		}
		return auth.Principal{}, time.Time{}, cluster.Errorf(cluster.ErrUnauthorized, "this session has ended; log in again")
	}
	u, err := c.store.User(claims.Subject)
	if err != nil {
		if errors.Is(err, cluster.ErrNotFound) {
			return auth.Principal{}, time.Time{}, cluster.Errorf(cluster.ErrUnauthorized, "this account no longer exists")
		}
		return auth.Principal{}, time.Time{}, err
	}
	if u.Suspended && sess.Kind != cluster.SessionImpersonation {
		return auth.Principal{}, time.Time{}, cluster.Errorf(cluster.ErrForbidden, "this account is suspended; contact the operator")
	}
	until := claims.ExpiresAt.Time
	if sess.ExpiresAt.Before(until) {
		until = sess.ExpiresAt
	}
	return auth.Principal{Kind: auth.KindCustomer, ID: u.ID, SessionID: sess.ID, Impersonator: sess.Operator}, until, nil
}

// verifyAccess checks an access token's signature and claims, reloading
// the key ring once when the token names a key this node has not loaded.
func (c *ControlPlane) verifyAccess(tok string) (auth.Claims, error) {
	claims, err := c.signer.Verify(tok)
	if err != nil && c.reloadKeys() {
		claims, err = c.signer.Verify(tok)
	}
	return claims, err
}

// reloadKeys loads the key ring from the store when it has changed; it
// reports whether it did.
func (c *ControlPlane) reloadKeys() bool {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	if time.Since(c.keysLoaded) < 100*time.Millisecond {
		return false
	}
	c.keysLoaded = time.Now()
	ring, err := c.store.SigningKeys()
	if err != nil || len(ring) == c.keysCount {
		return false
	}
	keys := make([]auth.SigningKey, len(ring))
	for i, k := range ring {
		keys[i] = auth.SigningKey{ID: k.ID, Secret: k.Secret}
	}
	c.signer.SetKeys(keys)
	c.keysCount = len(ring)
	return true
}

// keyState is the control plane's copy of the token-signing key ring.
type keyState struct {
	authCache  *lru.Cache[string, cachedAuth]
	signer     *auth.Signer
	keysMu     sync.Mutex
	keysLoaded time.Time
	keysCount  int
}

// principal returns the request's principal (set by guard).
func principal(r *http.Request) auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// clientIP is the caller's address: as a gateway or a forwarding
// control-plane node vouched for it (see withClientIP), or as this node
// sees the connection.
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientIPKey struct{}

// withClientIP believes cluster.HeaderClientIP on requests that carry the
// cluster secret (from a gateway, or a follower forwarding to the leader)
// and removes it from every request.
func (c *ControlPlane) withClientIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claimed := r.Header.Get(cluster.HeaderClientIP)
		secret := r.Header.Get(cluster.HeaderSecret)
		r.Header.Del(cluster.HeaderClientIP)
		r.Header.Del(cluster.HeaderSecret)
		if ip, err := netip.ParseAddr(claimed); err == nil && c.cfg.ClusterSecret != "" && auth.IsClusterSecret(c.cfg.ClusterSecret, secret) {
			r = r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip.String()))
		}
		next.ServeHTTP(w, r)
	})
}

// ownedTenant returns tenant id if the caller may act on it: operators
// any tenant, customers only their own (another's is "not found", so ids
// do not leak).
func (c *ControlPlane) ownedTenant(r *http.Request, id string) (cluster.Tenant, error) {
	t, err := c.store.Tenant(id)
	if err != nil {
		return t, err
	}
	if p := principal(r); p.Kind == auth.KindCustomer && t.Owner != p.ID {
		return cluster.Tenant{}, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %q not found", id)
	}
	return t, nil
}

// pathOwnedTenant is ownedTenant for the {id} of a tenant route.
func (c *ControlPlane) pathOwnedTenant(r *http.Request) (cluster.Tenant, error) {
	id, err := pathTenant(r)
	if err != nil {
		return cluster.Tenant{}, err
	}
	return c.ownedTenant(r, id)
}

// ensureSigningKey creates the cluster's first token-signing key.
func (c *ControlPlane) ensureSigningKey(ctx context.Context) error {
	ring, err := c.store.SigningKeys()
	if err != nil || len(ring) > 0 {
		c.reloadKeys()
		return err
	}
	k := auth.NewSigningKey()
	if _, err := c.apply(ctx, store.CmdAddSigningKey, "", store.AddSigningKey{
		Key: store.SigningKey{ID: k.ID, Secret: k.Secret}, IfFewerThan: 1,
	}); err != nil {
		return err
	}
	c.keysMu.Lock()
	c.keysLoaded = time.Time{}
	c.keysMu.Unlock()
	c.reloadKeys()
	return nil
}
