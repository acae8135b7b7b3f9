package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPlatformProxy_FailsOver(t *testing.T) {
	type echo struct {
		Method, Path, Auth, Host, Body string
	}
	var hits atomic.Int32
	cp2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Pbe-Internal", "x")
		_ = json.NewEncoder(w).Encode(echo{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Host, string(b)})
	}))
	t.Cleanup(cp2.Close)
	quiet := slog.New(slog.DiscardHandler)
	h := NewPlatformProxy([]string{"http://" + deadAddr(t), cp2.URL + "/"}, "", quiet)
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)

	t.Run("second URL answers", func(t *testing.T) {
		for i := range 2 { // the second request starts at the URL that answered
			const payload = `{"id":"acme"}`
			req, _ := http.NewRequest(http.MethodPost, front.URL+"/api/cp/tenants", strings.NewReader(payload))
			req.Host = "example.com"
			req.Header.Set("Authorization", "Bearer admin-token")
			resp, body := doRaw(t, req)
			var got echo
			_ = json.Unmarshal([]byte(body), &got)
			want := echo{http.MethodPost, "/api/cp/tenants", "Bearer admin-token", "example.com", payload}
			if resp.StatusCode != http.StatusOK || got != want {
				t.Errorf("request %d: got %d %+v, want 200 %+v", i+1, resp.StatusCode, got, want)
			}
			noInternalHeaders(t, resp.Header)
		}
		if got := hits.Load(); got != 2 {
			t.Errorf("requests at the live control plane: got %d, want 2", got)
		}
	})
	t.Run("none answers", func(t *testing.T) {
		h := NewPlatformProxy([]string{"http://" + deadAddr(t), "http://" + deadAddr(t), "not a url"}, "", quiet)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/cp/tenants", nil)
		resp, body := doRaw(t, req)
		wantJSONError(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	})
}

func doRaw(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
