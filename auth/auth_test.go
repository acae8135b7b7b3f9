package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pbe/pbe/cluster"
)

func TestRequireOperator(t *testing.T) {
	secret := cluster.NewTokenSecret()
	hash := cluster.HashToken(secret)
	lookup := func(h string) (cluster.Token, error) {
		if h == hash {
			return cluster.Token{ID: cluster.TokenID(h)}, nil
		}
		return cluster.Token{}, cluster.ErrTokenNotFound
	}
	var seen Principal
	h := RequireOperator(lookup, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
	}))
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"valid", "Bearer " + secret, 200},
		{"lower-case scheme", "bearer " + secret, 200},
		{"missing", "", 401},
		{"unknown token", "Bearer pbe_unknown", 401},
		{"basic scheme", "Basic " + secret, 401},
		{"hash instead of secret", "Bearer " + hash, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("got %d, want %d", w.Code, tc.want)
			}
			if tc.want == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	if seen.Kind != KindOperator || seen.ID != cluster.TokenID(hash) {
		t.Fatalf("principal: got %+v", seen)
	}
}

func TestAuthenticate_StoreFailureIsNot401(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer x")
	_, err := Authenticate(req, func(string) (cluster.Token, error) { return cluster.Token{}, errors.New("disk") })
	if err == nil || errors.Is(err, cluster.ErrUnauthorized) {
		t.Fatalf("got %v, want an internal error", err)
	}
}
