// Package tracing connects pbe to OpenTelemetry. Tracing is off unless an
// OTLP endpoint is given (--otlp-endpoint, or the standard
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// variables); then spans go to it over OTLP/HTTP, batched. Off, every span
// is OpenTelemetry's no-op and costs next to nothing.
//
// Spans: "gateway" (a request at the gateway) with, in a gateway of its
// own, "gateway.route" (finding the tenant's node: the route cache or the
// control plane) and "gateway.proxy" (forwarding to that node), one of
// each per attempt; "tenant.request" (a tenant node serving it) with
// "tenant.acquire" (finding or activating the tenant), under which an
// activation adds "tenant.restore" (the local copy or the object store)
// and "tenant.bootstrap" (opening the PocketBase app until it serves);
// "cp.api" (a platform API call) with "raft.apply" (a write through
// Raft) and, for each order it sends a node in its own process,
// "tenant.order". W3C trace context (traceparent) is taken from the
// client's request and passed on by the gateway to the node, by the
// gateway's and nodes' calls to the control plane and by the control
// plane's orders to nodes, so one request is one trace across processes.
package tracing

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Enabled reports whether an endpoint is configured (flag or environment).
func Enabled(endpoint string) bool {
	return endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the process's tracer provider, exporting to endpoint (an
// http(s):// URL; empty: the OTEL_* variables), with service.name
// service. It returns a function that flushes and stops it. Without an
// endpoint it only installs the W3C propagator and returns a no-op.
func Setup(ctx context.Context, endpoint, service, node string) (func(context.Context) error, error) {
	setPropagator()
	if !Enabled(endpoint) {
		on.Store(false)
		return func(context.Context) error { return nil }, nil
	}
	var opts []otlptracehttp.Option
	if endpoint != "" {
		if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
			return nil, errors.New("--otlp-endpoint must be an http:// or https:// URL, e.g. http://localhost:4318")
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), attribute.String("pbe.node", node)))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return tp.Shutdown, nil
}

// Use makes tp the process's tracer provider and turns tracing on (Setup
// does with its OTLP exporter; a test gives a provider that records in
// memory). The returned function puts the previous provider and on/off
// state back. Not for use while requests are being served.
func Use(tp trace.TracerProvider) (restore func()) {
	prev, wasOn := otel.GetTracerProvider(), on.Load()
	setPropagator()
	otel.SetTracerProvider(tp)
	on.Store(true)
	return func() {
		otel.SetTracerProvider(prev)
		on.Store(wasOn)
	}
}

// setPropagator installs W3C trace context and baggage as the process's
// propagation format.
func setPropagator() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// on is whether a provider is installed: off, the request path starts no
// span at all (not even a no-op one with its attributes).
var on atomic.Bool

// noSpan is what Start and StartServer return while tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

// Start starts a span called name under ctx's, when tracing is on.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !on.Load() {
		return ctx, noSpan
	}
	return Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// Finish ends span, marking it failed with err when err is not nil.
func Finish(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Annotate sets an attribute on ctx's span when tracing is on. (One
// attribute, not a list: off, the call allocates nothing.)
func Annotate(ctx context.Context, kv attribute.KeyValue) {
	if on.Load() {
		trace.SpanFromContext(ctx).SetAttributes(kv)
	}
}

// Detach returns a context for work that ctx's request starts but that
// outlives it (it shares no cancellation or values with ctx): it carries
// ctx's span when tracing is on, so the work's spans join the request's
// trace, and is context.Background() when off.
func Detach(ctx context.Context) context.Context {
	return WithSpanOf(context.Background(), ctx)
}

// WithSpanOf returns ctx carrying the span of from, for work that runs
// under ctx's cancellation (a shared lookup bounded by its component's
// lifetime, say) on behalf of from's request. Off, it returns ctx.
func WithSpanOf(ctx, from context.Context) context.Context {
	if !on.Load() {
		return ctx
	}
	return trace.ContextWithSpan(ctx, trace.SpanFromContext(from))
}

// Tracer is pbe's tracer (from the current global provider).
func Tracer() trace.Tracer { return otel.Tracer("github.com/pbe/pbe") }

// StartServer starts the server span of a request: a child of the span
// already in its context (a handler in the same process), else of the
// trace context in its headers (the client's or an upstream process's).
func StartServer(r *http.Request, name string, attrs ...attribute.KeyValue) (*http.Request, trace.Span) {
	if !on.Load() {
		return r, noSpan
	}
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	attrs = append(attrs, attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
		attribute.String("server.address", r.Host))
	ctx, span := Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return r.WithContext(ctx), span
}

// Inject writes ctx's trace context into outgoing headers (when tracing
// is off, the client's own traceparent passes through untouched).
func Inject(ctx context.Context, h http.Header) {
	if on.Load() {
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// Handler wraps next in a server span called name that records the
// response status.
func Handler(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !on.Load() {
			next.ServeHTTP(w, r)
			return
		}
		r, span := StartServer(r, name)
		defer span.End()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		End(span, sw.status)
	})
}

// End records an answer's status on span.
func End(span trace.Span, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// statusWriter remembers the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streams (realtime, events) through.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
