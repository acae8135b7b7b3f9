package s3test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Put is one PutObject request a Proxy saw: the bucket key and the
// storage class it asked for ("" for none).
type Put struct {
	Key   string
	Class string
}

// Proxy sits in front of a Server and records the storage class of every
// PutObject. versitygw accepts any storage class and keeps none, so the
// proxy is how a test sees which class a client asked for; with
// RefuseClasses it answers a PutObject that names a class with 400
// InvalidStorageClass, as S3-compatible services without classes do.
type Proxy struct {
	srv    *Server
	url    string
	refuse atomic.Bool
	mu     sync.Mutex
	puts   []Put
}

// StartProxy starts a proxy to srv, stopped at the end of the test.
func StartProxy(t testing.TB, srv *Server) *Proxy {
	t.Helper()
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{srv: srv}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // part of the client's signature
	}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := r.Header.Get("X-Amz-Storage-Class")
		if r.Method == http.MethodPut && r.URL.Query().Get("uploadId") == "" {
			p.mu.Lock()
			p.puts = append(p.puts, Put{Key: strings.TrimPrefix(r.URL.Path, "/"), Class: class})
			p.mu.Unlock()
		}
		if class != "" && p.refuse.Load() {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidStorageClass</Code><Message>The storage class you specified is not valid</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.url = hs.URL
	return p
}

// RefuseClasses makes the proxy refuse (or again pass) PutObject requests
// that name a storage class.
func (p *Proxy) RefuseClasses(refuse bool) { p.refuse.Store(refuse) }

// URL is Server.URL reached through the proxy.
func (p *Proxy) URL(t testing.TB, prefix string) string {
	return strings.Replace(p.srv.URL(t, prefix), "endpoint="+p.srv.Endpoint, "endpoint="+p.url, 1)
}

// Puts returns the PutObject requests seen so far, oldest first; keys are
// "{bucket}/{key}" (path-style).
func (p *Proxy) Puts() []Put {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.puts)
}
