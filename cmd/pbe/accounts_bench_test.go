package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pbe/pbe/auth"
)

// benchCustomer signs a customer up and logs them in; it returns the
// access token.
func (s *benchPlatform) benchCustomer(b *testing.B, addr, password string) string {
	b.Helper()
	base := "http://localhost:" + s.port
	benchMustCall(b, s.client, http.StatusAccepted, "POST", base+"/api/cp/auth/signup", `{"email":"`+addr+`","password":"`+password+`"}`)
	body := benchMustCall(b, s.client, http.StatusOK, "POST", base+"/api/cp/auth/login", `{"email":"`+addr+`","password":"`+password+`"}`)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		b.Fatal(err)
	}
	return out.AccessToken
}

// BenchmarkLogin measures customer logins through the platform API, 16
// concurrent clients: each is one argon2id hash (deliberately slow), a
// session written through Raft, and an audit entry.
func BenchmarkLogin(b *testing.B) {
	s := startBenchPlatform(b)
	s.benchCustomer(b, "bench@example.com", "bench-password")
	body := `{"email":"bench@example.com","password":"bench-password"}`
	url := "http://localhost:" + s.port + "/api/cp/auth/login"
	runBenchLoad(b, s.client, func() (*http.Request, error) {
		req, err := http.NewRequest("POST", url, strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
}

// BenchmarkAccessTokenCheck measures what authenticating one platform API
// request with a customer's access token costs. token=reused is a client
// calling again with its token (the check is remembered until the token
// expires or a session or account changes); token=first-use is a token the
// node has not seen: its HS256 signature and claims, its session and its
// user (both read from the local store). first-use cycles through more
// tokens than the node remembers, so none is a repeat.
func BenchmarkAccessTokenCheck(b *testing.B) {
	s := startBenchPlatform(b)
	tok := s.benchCustomer(b, "bench@example.com", "bench-password")
	req := func(tok string) *http.Request {
		r, _ := http.NewRequest("GET", "http://localhost/api/cp/me", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	b.Run("token=reused", func(b *testing.B) {
		r := req(tok)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.p.cp.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("token=first-use", func(b *testing.B) {
		ring, err := s.p.store.SigningKeys()
		if err != nil {
			b.Fatal(err)
		}
		key := ring[len(ring)-1]
		var claims auth.Claims
		if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
			b.Fatal(err)
		}
		reqs := make([]*http.Request, 20000)
		for i := range reqs {
			c := claims
			c.ID = strconv.Itoa(i)
			t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
			t.Header["kid"] = key.ID
			signed, err := t.SignedString(key.Secret)
			if err != nil {
				b.Fatal(err)
			}
			reqs[i] = req(signed)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.p.cp.Authenticate(reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
