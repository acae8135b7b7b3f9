package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
// request with a customer's access token costs: the JWT's signature and
// claims, its session and its user (both read from the local store).
func BenchmarkAccessTokenCheck(b *testing.B) {
	s := startBenchPlatform(b)
	tok := s.benchCustomer(b, "bench@example.com", "bench-password")
	req, _ := http.NewRequest("GET", "http://localhost/api/cp/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.p.cp.Authenticate(req); err != nil {
			b.Fatal(err)
		}
	}
}
