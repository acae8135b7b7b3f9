package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testServer is an all-in-one platform running in the test process on a
// loopback port, driven through its real HTTP surface.
type testServer struct {
	t      testing.TB
	opts   serveOptions
	p      *platform
	port   string
	token  string
	client *http.Client
	served chan error
}

// startServer starts a platform with data in dir; mutate adjusts options.
func startServer(t *testing.T, dir string, mutate func(*serveOptions)) *testServer {
	t.Helper()
	s := startRole(t, dir, mutate)
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatalf("admin.token: %v", err)
	}
	s.token = strings.TrimSpace(string(tok))
	return s
}

// startRole is startServer for any mode: it leaves token empty (only a
// control plane writes admin.token).
func startRole(t *testing.T, dir string, mutate func(*serveOptions)) *testServer {
	t.Helper()
	o := defaultServeOptions()
	o.httpAddr = "127.0.0.1:0"
	o.dir = dir
	o.replicationInterval = 100 * time.Millisecond
	if mutate != nil {
		mutate(&o)
	}
	if err := o.validate(); err != nil {
		t.Fatalf("options: %v", err)
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPlatform(context.Background(), &o, ln, testLogger(t))
	if err != nil {
		t.Fatalf("start platform: %v", err)
	}
	_, port, _ := net.SplitHostPort(o.httpAddr)
	s := &testServer{t: t, opts: o, p: p, port: port, client: loopbackClient(port), served: make(chan error, 1)}
	go func() { s.served <- p.server.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

// stop stops the platform gracefully; calling it again does nothing.
func (s *testServer) stop() {
	if s.p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.p.stop(ctx); err != nil {
		s.t.Errorf("stop platform: %v", err)
	}
	<-s.served
	s.p = nil
}

// testLogger logs to the test at the level of PBE_TEST_LOG (default warn).
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if v := os.Getenv("PBE_TEST_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// loopbackClient dials 127.0.0.1:port whatever the host, as a browser
// resolves *.localhost.
func loopbackClient(port string) *http.Client { return loopbackClientFrom("", port) }

// loopbackClientFrom is loopbackClient with connections from local address
// src (any 127.x address is the loopback interface's; "" any).
func loopbackClientFrom(src, port string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, "127.0.0.1:"+port)
			},
			MaxIdleConnsPerHost: 64,
		},
	}
}

// base is the platform host's URL.
func (s *testServer) base() string { return "http://localhost:" + s.port }

// tenantURL is a URL on tenant id's host.
func (s *testServer) tenantURL(id, path string) string {
	return "http://" + id + ".localhost:" + s.port + path
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; body may be a string, []byte, an io.Reader or a value
// encoded as JSON. hdr holds header pairs.
func (s *testServer) do(method, url string, body any, hdr ...string) response {
	s.t.Helper()
	var rd io.Reader
	jsonBody := false
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd, jsonBody = bytes.NewReader(enc), true
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if jsonBody {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// api calls the platform API as the operator.
func (s *testServer) api(method, path string, body any, hdr ...string) response {
	s.t.Helper()
	return s.do(method, s.base()+path, body, append([]string{"Authorization", "Bearer " + s.token}, hdr...)...)
}

// mustStatus fails the test unless r has status want.
func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d, want %d; body: %s", r.status, want, r.body)
	}
}

// createTenant creates tenant id with a superuser and returns its token.
func (s *testServer) createTenant(id string) string {
	s.t.Helper()
	mustStatus(s.t, s.api("POST", "/api/cp/tenants", map[string]any{
		"id": id, "admin": map[string]string{"email": "admin@" + id + ".test", "password": "password-" + id},
	}), http.StatusCreated)
	return s.superuserToken(id)
}

// superuserToken logs in as tenant id's first superuser.
func (s *testServer) superuserToken(id string) string {
	s.t.Helper()
	r := s.do("POST", s.tenantURL(id, "/api/collections/_superusers/auth-with-password"),
		map[string]string{"identity": "admin@" + id + ".test", "password": "password-" + id})
	mustStatus(s.t, r, http.StatusOK)
	var out struct{ Token string }
	r.json(s.t, &out)
	return out.Token
}

// createPostsCollection creates a public "posts" collection in tenant id.
func (s *testServer) createPostsCollection(id, token string) {
	s.t.Helper()
	mustStatus(s.t, s.do("POST", s.tenantURL(id, "/api/collections"), map[string]any{
		"name": "posts", "type": "base",
		"listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
		"fields": []map[string]any{
			{"name": "title", "type": "text"},
			{"name": "created", "type": "autodate", "onCreate": true},
		},
	}, "Authorization", token), http.StatusOK)
}

// createPost creates a record and returns its id.
func (s *testServer) createPost(id, title string) string {
	s.t.Helper()
	r := s.do("POST", s.tenantURL(id, "/api/collections/posts/records"), map[string]string{"title": title})
	mustStatus(s.t, r, http.StatusOK)
	var rec struct{ ID string }
	r.json(s.t, &rec)
	return rec.ID
}

// postTitles lists the titles of tenant id's posts, oldest first.
func (s *testServer) postTitles(id string) []string {
	s.t.Helper()
	var titles []string
	for page := 1; ; page++ {
		r := s.do("GET", s.tenantURL(id, fmt.Sprintf("/api/collections/posts/records?perPage=1000&page=%d&sort=created,title&skipTotal=1", page)), nil)
		mustStatus(s.t, r, http.StatusOK)
		var out struct {
			Items []struct{ Title string }
		}
		r.json(s.t, &out)
		for _, it := range out.Items {
			titles = append(titles, it.Title)
		}
		if len(out.Items) < 1000 {
			return titles
		}
	}
}
