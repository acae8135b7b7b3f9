package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

// inMemory turns tracing on for the test with spans kept in memory.
func inMemory(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	restore := Use(tp)
	t.Cleanup(func() {
		restore()
		_ = tp.Shutdown(context.Background())
	})
	return exp
}

func TestUse_SpansJoinTheClientsTrace(t *testing.T) {
	exp := inMemory(t)
	r := httptest.NewRequest("GET", "/api/health", nil)
	r.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	r, server := StartServer(r, "server")
	ctx, child := Start(r.Context(), "child")
	Annotate(ctx, attribute.Bool("cached", true))
	Finish(child, errors.New("broken"))
	// Work that outlives the request: no cancellation, the same trace.
	cancelled, cancel := context.WithCancel(r.Context())
	cancel()
	detached := Detach(cancelled)
	if detached.Err() != nil {
		t.Fatal("a detached context was cancelled with the request's")
	}
	_, later := Start(detached, "later")
	later.End()
	// Work under another context's cancellation, in the request's trace.
	bounded, stop := context.WithCancel(context.Background())
	joined := WithSpanOf(bounded, r.Context())
	stop()
	if joined.Err() == nil {
		t.Error("WithSpanOf dropped its context's cancellation")
	}
	if got := trace.SpanContextFromContext(joined); got.SpanID() != trace.SpanContextFromContext(r.Context()).SpanID() {
		t.Errorf("WithSpanOf carries span %s, want the server span", got.SpanID())
	}
	out := http.Header{}
	Inject(r.Context(), out)
	server.End()

	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
	}
	srv, ch, lt := spans["server"], spans["child"], spans["later"]
	for name, s := range map[string]tracetest.SpanStub{"server": srv, "child": ch, "later": lt} {
		if got := s.SpanContext.TraceID().String(); got != clientTrace {
			t.Errorf("%s: trace %s, want the client's %s", name, got, clientTrace)
		}
	}
	if srv.Parent.SpanID().String() != clientSpan || srv.SpanKind != trace.SpanKindServer {
		t.Errorf("server span: parent %s kind %v, want parent %s, a server span", srv.Parent.SpanID(), srv.SpanKind, clientSpan)
	}
	if ch.Parent.SpanID() != srv.SpanContext.SpanID() || lt.Parent.SpanID() != srv.SpanContext.SpanID() {
		t.Errorf("child's parent %s, later's %s, want the server span %s", ch.Parent.SpanID(), lt.Parent.SpanID(), srv.SpanContext.SpanID())
	}
	if ch.Status.Code != codes.Error || ch.Status.Description != "broken" || len(ch.Attributes) != 1 || ch.Attributes[0].Key != "cached" {
		t.Errorf("child: status %+v attributes %v, want error \"broken\" and cached", ch.Status, ch.Attributes)
	}
	if want := "00-" + clientTrace + "-" + srv.SpanContext.SpanID().String() + "-01"; out.Get("traceparent") != want {
		t.Errorf("injected traceparent %q, want %q", out.Get("traceparent"), want)
	}
}

// TestOff_CostsNothing: with tracing off the request path starts no span,
// reads no header and allocates nothing.
func TestStart_OffCostsNothing(t *testing.T) {
	if on.Load() {
		t.Fatal("tracing is on at the start of the test")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	out := http.Header{}
	kv := attribute.Bool("cached", true)
	err := errors.New("broken")
	allocs := testing.AllocsPerRun(100, func() {
		r2, server := StartServer(r, "server")
		ctx, span := Start(r2.Context(), "child")
		Annotate(ctx, kv)
		Finish(span, err)
		_ = Detach(ctx)
		if WithSpanOf(r.Context(), ctx) != r.Context() {
			t.Fatal("WithSpanOf changed the context with tracing off")
		}
		Inject(ctx, out)
		server.End()
		if r2 != r || span.IsRecording() {
			t.Fatal("a span was started with tracing off")
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per request, want 0", allocs)
	}
	if len(out) != 0 {
		t.Errorf("injected %v with tracing off", out)
	}
	restore := Use(sdktrace.NewTracerProvider())
	restore()
	if on.Load() {
		t.Error("restore left tracing on")
	}
}
