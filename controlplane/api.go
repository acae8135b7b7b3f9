package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/tracing"
)

// IdempotencyKeyHeader lets a client make a write safe to retry: the same
// key within 24 hours returns the first outcome and changes nothing.
const IdempotencyKeyHeader = "Idempotency-Key"

// Handler returns the platform API (everything under /api/cp/).
func (c *ControlPlane) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range c.routes() {
		mux.Handle(rt.method+" "+rt.path, c.guarded(rt))
	}
	return tracing.Handler("cp.api", serverTiming(c.withClientIP(c.nameLeader(jsonRouteErrors(mux)))))
}

// guarded wraps a route's handler with its authentication.
func (c *ControlPlane) guarded(rt route) http.Handler {
	switch rt.access {
	case accessPublic:
		return rt.h
	case accessCluster:
		return auth.RequireCluster(c.cfg.ClusterSecret, rt.h)
	}
	return c.guard(rt.access, rt.h)
}

// serverTiming reports on every answer how long this node took to start
// it (Server-Timing: cp;dur=milliseconds), for telling a slow node from a
// slow network.
func serverTiming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&timingWriter{ResponseWriter: w, start: time.Now()}, r)
	})
}

// timingWriter sets the Server-Timing header when the answer starts.
type timingWriter struct {
	http.ResponseWriter
	start   time.Time
	written bool
}

func (t *timingWriter) WriteHeader(code int) {
	if !t.written {
		t.written = true
		d := time.Since(t.start)
		t.Header().Set("Server-Timing", "cp;dur="+strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64))
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *timingWriter) Write(b []byte) (int, error) {
	if !t.written {
		t.WriteHeader(http.StatusOK)
	}
	return t.ResponseWriter.Write(b)
}

// Flush lets streaming answers (the watch stream) through.
func (t *timingWriter) Flush() {
	if !t.written {
		t.WriteHeader(http.StatusOK)
	}
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (t *timingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// nameLeader sets LeaderHeader on the answers of the leader.
func (c *ControlPlane) nameLeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.APIAddr != "" && c.raft.IsLeader() {
			w.Header().Set(LeaderHeader, c.cfg.APIAddr)
		}
		next.ServeHTTP(w, r)
	})
}

// jsonRouteErrors turns the mux's own 404 and 405 answers into JSON errors.
func jsonRouteErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the request's path values
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			cluster.WriteJSONError(w, http.StatusMethodNotAllowed, cluster.ErrorBody{
				Code:    "method_not_allowed",
				Message: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, probe.header.Get("Allow")),
			})
			return
		}
		cluster.WriteJSONError(w, http.StatusNotFound, cluster.ErrorBody{
			Code: "not_found", Message: fmt.Sprintf("no API route %s %s", r.Method, clipPath(r.URL.Path)),
		})
	})
}

// statusProbe records what a handler would answer, writing nothing.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(s int)           { p.status = s }

func clipPath(p string) string {
	if len(p) > 100 {
		return p[:100] + "..."
	}
	return p
}

// decodeJSON reads a JSON object body into v strictly: one object, known
// fields only, at most limit bytes.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &cluster.Error{Code: "unsupported_media_type", Message: "send the request body as JSON with Content-Type: application/json"}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if dec.More() {
		return cluster.Errorf(cluster.ErrInvalidInput, "request body must hold a single JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err, limit)
		}
		return cluster.Errorf(cluster.ErrInvalidInput, "request body must hold a single JSON object")
	}
	return nil
}

// jsonError explains a decoding failure in terms of what to fix.
func jsonError(err error, limit int64) error {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		errs = err.Error()
	)
	switch {
	case errors.As(err, &mbe):
		return &cluster.Error{Code: "body_too_large", Message: fmt.Sprintf("request body is larger than the limit of %d bytes", limit)}
	case errors.Is(err, io.EOF):
		return cluster.Errorf(cluster.ErrInvalidInput, "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return cluster.Errorf(cluster.ErrInvalidInput, "request body is truncated JSON")
	case errors.As(err, &syn):
		return cluster.Errorf(cluster.ErrInvalidInput, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return cluster.Errorf(cluster.ErrInvalidInput, "field %q must be a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return cluster.Errorf(cluster.ErrInvalidInput, "request body must be a JSON object")
	case strings.HasPrefix(errs, "json: unknown field "):
		return cluster.Errorf(cluster.ErrInvalidInput, "unknown field %s", strings.TrimPrefix(errs, "json: unknown field "))
	}
	return cluster.Errorf(cluster.ErrInvalidInput, "invalid JSON body: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	}
	return "number"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonEncode(w http.ResponseWriter, v any) error { return json.NewEncoder(w).Encode(v) }
