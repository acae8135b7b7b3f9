// Package auth authenticates callers of the platform API. Operator tokens
// are opaque secrets stored only as SHA-256 hashes; a request proves
// itself with "Authorization: Bearer <token>".
package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/pbe/pbe/cluster"
)

// Principal is who a request acts as.
type Principal struct {
	// Kind is KindOperator, KindCustomer or KindNode.
	Kind string
	// ID is the operator token's id, or the customer's user id.
	ID string
	// SessionID is a customer's session (their login or an impersonation).
	SessionID string
	// Impersonator is the operator token id behind an impersonation.
	Impersonator string
}

// Actor names the principal in audit entries: "operator:{id}",
// "user:{id}" or "node".
func (p Principal) Actor() string {
	switch p.Kind {
	case KindOperator:
		return "operator:" + p.ID
	case KindCustomer:
		return "user:" + p.ID
	case KindNode:
		return "node"
	}
	return "anonymous"
}

// Principal kinds.
const (
	// KindOperator is a cluster admin (an operator token).
	KindOperator = "operator"
	// KindNode is another node of the platform (the cluster secret).
	KindNode = "node"
	// KindCustomer is a customer (a cluster user) with an access token.
	KindCustomer = "customer"
)

// TokenLookup finds an operator token by the hash of its secret; it returns
// cluster.ErrTokenNotFound for an unknown one.
type TokenLookup func(hash string) (cluster.Token, error)

type ctxKey struct{}

// FromContext returns the principal a request was authenticated as.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Authenticate resolves the request's credentials to a principal.
func Authenticate(r *http.Request, lookup TokenLookup) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return Principal{}, cluster.Errorf(cluster.ErrUnauthorized, "missing credentials: send Authorization: Bearer <operator token>")
	}
	t, err := lookup(cluster.HashToken(tok))
	if errors.Is(err, cluster.ErrTokenNotFound) {
		return Principal{}, cluster.Errorf(cluster.ErrUnauthorized, "invalid or revoked token")
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{Kind: KindOperator, ID: t.ID}, nil
}

// RequireOperator lets through only requests with a valid operator token;
// others get 401 JSON.
func RequireOperator(lookup TokenLookup, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := Authenticate(r, lookup)
		if err != nil {
			if errors.Is(err, cluster.ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pbe"`)
			}
			cluster.WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// IsClusterSecret reports, in constant time, whether tok is the cluster
// secret. An empty secret matches nothing.
func IsClusterSecret(secret, tok string) bool {
	return secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(tok)) == 1
}

// RequireClusterOrOperator lets through requests that carry the cluster
// secret (calls between nodes) or a valid operator token.
func RequireClusterOrOperator(secret string, lookup TokenLookup, next http.Handler) http.Handler {
	operator := RequireOperator(lookup, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := BearerToken(r); ok && IsClusterSecret(secret, tok) {
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Kind: KindNode})))
			return
		}
		operator.ServeHTTP(w, r)
	})
}

// RequireCluster lets through only requests that carry the cluster secret
// (in HeaderSecret or as a bearer token): calls between the platform's own
// nodes. An empty secret lets nothing through.
func RequireCluster(secret string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get(cluster.HeaderSecret)
		if tok == "" {
			tok, _ = BearerToken(r)
		}
		if !IsClusterSecret(secret, tok) {
			cluster.WriteError(w, cluster.Errorf(cluster.ErrUnauthorized, "this endpoint is for the platform's own nodes: missing or wrong cluster secret"))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Kind: KindNode})))
	})
}
