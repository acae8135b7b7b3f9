package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/pbe/pbe/tracing"
)

// otlpReceiver is a real OTLP/HTTP trace endpoint in the test process.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service, name       string
	trace, span, parent string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				o.spans = append(o.spans, receivedSpan{service: service, name: s.Name,
					trace: hex.EncodeToString(s.TraceId), span: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId)})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write([]byte{})
}

// find returns the span of trace named name, once it has arrived.
func (o *otlpReceiver) find(t *testing.T, trace, name string) receivedSpan {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		for _, s := range o.spans {
			if s.trace == trace && s.name == name {
				o.mu.Unlock()
				return s
			}
		}
		o.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s span in trace %s", name, trace)
	return receivedSpan{}
}

// TestTracing_OneRequestIsOneTraceAcrossProcesses sends a request with a
// W3C traceparent through a gateway process to a tenant-node process,
// both exporting to a real OTLP endpoint, and checks that their spans form
// one trace: the client's span, the gateway's, the node's.
func TestTracing_OneRequestIsOneTraceAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	saved := fleetEnv
	fleetEnv = append(append([]string(nil), saved...), "OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	defer func() { fleetEnv = saved }()
	f := startFleet(t, "tn-1")
	f.createTenant("traced", "async")
	g := f.gateway()

	const trace, client = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := g.do("GET", g.tenantURL("traced", "/api/collections/posts/records"), nil, "traceparent", "00-"+trace+"-"+client+"-01")
	mustStatus(t, r, http.StatusOK)

	gw := rcv.find(t, trace, "gateway")
	proxy := rcv.find(t, trace, "gateway.proxy")
	node := rcv.find(t, trace, "tenant.request")
	acquire := rcv.find(t, trace, "tenant.acquire")
	if gw.service != "pbe-gateway" || proxy.service != "pbe-gateway" || node.service != "pbe-tenant-node" {
		t.Fatalf("services: gateway span from %q, proxy span from %q, node span from %q", gw.service, proxy.service, node.service)
	}
	if gw.parent != client || proxy.parent != gw.span || node.parent != proxy.span || acquire.parent != node.span {
		t.Fatalf("not one connected trace: client %s -> gateway %+v -> proxy %+v -> node %+v -> acquire %+v", client, gw, proxy, node, acquire)
	}
}

// TestTracing_EndpointFlag: --otlp-endpoint alone (no OTEL_* variable)
// turns tracing on.
func TestTracing_EndpointFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pbe binary")
	}
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	p := launchProc(t, t.TempDir(), freePort(t), []string{"--otlp-endpoint", srv.URL},
		[]string{"PBE_ADMIN_TOKEN=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_BSP_SCHEDULE_DELAY=100"})
	p.waitReady()
	s := p.harness(t)

	const trace, client = "5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8"
	mustStatus(t, s.api("GET", "/api/cp/tenants", nil, "traceparent", "00-"+trace+"-"+client+"-01"), http.StatusOK)
	gw := rcv.find(t, trace, "gateway")
	api := rcv.find(t, trace, "cp.api")
	if gw.service != "pbe-all-in-one" || gw.parent != client || api.parent != gw.span {
		t.Fatalf("not one connected trace: client %s -> gateway %+v -> cp.api %+v", client, gw, api)
	}
}

// spanTree is the finished spans of one trace, kept in memory.
type spanTree struct {
	t     *testing.T
	exp   *tracetest.InMemoryExporter
	trace string
}

// spans returns the trace's spans exported so far.
func (s spanTree) spans() []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range s.exp.GetSpans() {
		if sp.SpanContext.TraceID().String() == s.trace {
			out = append(out, sp)
		}
	}
	return out
}

// wait waits (bounded) until the trace has a span of each name: a span
// ends after the response that it covers may have reached the client.
func (s spanTree) wait(names ...string) []tracetest.SpanStub {
	s.t.Helper()
	var got []tracetest.SpanStub
	waitFor(s.t, fmt.Sprintf("spans %v in trace %s", names, s.trace), func() bool {
		got = s.spans()
		have := map[string]bool{}
		for _, sp := range got {
			have[sp.Name] = true
		}
		for _, n := range names {
			if !have[n] {
				return false
			}
		}
		return true
	})
	return got
}

// waitAPI waits (bounded) until the trace has a cp.api span for path
// under a span called parent, and returns the trace's spans.
func (s spanTree) waitAPI(parent, path string) []tracetest.SpanStub {
	s.t.Helper()
	var got []tracetest.SpanStub
	waitFor(s.t, fmt.Sprintf("a cp.api span for %s under %s in trace %s", path, parent, s.trace), func() bool {
		got = s.spans()
		names := map[trace.SpanID]string{}
		for _, sp := range got {
			names[sp.SpanContext.SpanID()] = sp.Name
		}
		return slices.ContainsFunc(got, func(sp tracetest.SpanStub) bool {
			return sp.Name == "cp.api" && attr(sp, "url.path") == path && names[sp.Parent.SpanID()] == parent
		})
	})
	return got
}

// checkTree checks that every span of a trace descends from the client's
// span through spans of the trace, and that each child named in edges has
// a parent of the name given, returning the spans by name (the first of
// each).
func checkTree(t *testing.T, spans []tracetest.SpanStub, client string, edges map[string]string) map[string]tracetest.SpanStub {
	t.Helper()
	byID := map[string]tracetest.SpanStub{}
	byName := map[string]tracetest.SpanStub{}
	for _, sp := range spans {
		byID[sp.SpanContext.SpanID().String()] = sp
		if _, ok := byName[sp.Name]; !ok {
			byName[sp.Name] = sp
		}
	}
	for _, sp := range spans {
		parent := sp.Parent.SpanID().String()
		if _, ok := byID[parent]; !ok && parent != client {
			t.Errorf("span %s has parent %s, neither the client's span %s nor one of the trace", sp.Name, parent, client)
		}
	}
	for child, parent := range edges {
		found := false
		for _, sp := range spans {
			if sp.Name == child && byID[sp.Parent.SpanID().String()].Name == parent {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s span under a %s span; spans: %v", child, parent, spanNames(spans))
		}
	}
	return byName
}

func spanNames(spans []tracetest.SpanStub) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name+"<"+sp.Parent.SpanID().String()+"="+sp.SpanContext.SpanID().String())
	}
	return out
}

// TestTracing_InMemoryOneTraceAcrossGatewayAndNode runs a control plane,
// a tenant node and a gateway in the test process, each in its own mode
// behind its own loopback listener, with spans recorded by the SDK's
// in-memory exporter. One request with a client traceparent is one
// connected trace: the gateway's routing (with the control plane's route
// call on a cache miss) and proxying, the node's request and, for a cold
// tenant, its restore, bootstrap and tenant lookup; a control-plane API
// call through the gateway is cp.api with a raft.apply under it, and the
// order it sends a node is that node's tenant.order under it.
func TestTracing_InMemoryOneTraceAcrossGatewayAndNode(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	restore := tracing.Use(tp)
	t.Cleanup(func() { // after the roles have stopped (cleanups run last first)
		restore()
		_ = tp.Shutdown(context.Background())
	})
	objects := "file://" + t.TempDir()
	cp := startServer(t, t.TempDir(), func(o *serveOptions) {
		o.mode, o.objects, o.clusterSecret = "control-plane", objects, testClusterSecret
	})
	startRole(t, t.TempDir(), func(o *serveOptions) {
		o.mode, o.objects, o.clusterSecret, o.controlPlane = "tenant-node", objects, testClusterSecret, cp.base()
		o.nodeID = "tn-1"
	})
	gw := startRole(t, t.TempDir(), func(o *serveOptions) {
		o.mode, o.clusterSecret, o.controlPlane = "gateway", testClusterSecret, cp.base()
	})
	waitFor(t, "the gateway's route feed", func() bool { return gw.do("GET", gw.base()+"/readyz", nil).status == http.StatusOK })
	gw.token = cp.token

	t.Run("a control-plane API call", func(t *testing.T) {
		const trace, client = "6bf92f3577b34da6a3ce929d0e0e4738", "20f067aa0ba902b9"
		mustStatus(t, gw.api("POST", "/api/cp/tenants", map[string]string{"id": "traced"}, "traceparent", "00-"+trace+"-"+client+"-01"), http.StatusCreated)
		spans := spanTree{t: t, exp: exp, trace: trace}.wait("gateway", "cp.api", "raft.apply")
		byName := checkTree(t, spans, client, map[string]string{"cp.api": "gateway", "raft.apply": "cp.api"})
		if got := byName["gateway"].Parent.SpanID().String(); got != client {
			t.Errorf("gateway span's parent %s, want the client's %s", got, client)
		}
	})

	t.Run("a request to a cold tenant", func(t *testing.T) {
		const trace, client = "7bf92f3577b34da6a3ce929d0e0e4739", "30f067aa0ba902ba"
		mustStatus(t, gw.do("GET", gw.tenantURL("traced", "/api/health"), nil, "traceparent", "00-"+trace+"-"+client+"-01"), http.StatusOK)
		tree := spanTree{t: t, exp: exp, trace: trace}
		tree.wait("gateway", "gateway.route", "gateway.proxy", "tenant.request", "tenant.acquire", "tenant.restore", "tenant.bootstrap")
		// The route cache missed: the lookup is the control plane's route
		// call, and the node's activation reads the tenant's record, both
		// in the same trace.
		tree.waitAPI("gateway.route", "/api/cp/internal/route/traced")
		spans := tree.waitAPI("tenant.acquire", "/api/cp/tenants/traced")
		byName := checkTree(t, spans, client, map[string]string{
			"gateway.route":    "gateway",
			"cp.api":           "gateway.route",
			"gateway.proxy":    "gateway",
			"tenant.request":   "gateway.proxy",
			"tenant.acquire":   "tenant.request",
			"tenant.restore":   "tenant.acquire",
			"tenant.bootstrap": "tenant.acquire",
		})
		if got := byName["gateway"].Parent.SpanID().String(); got != client {
			t.Errorf("gateway span's parent %s, want the client's %s", got, client)
		}
		if kind := attr(byName["tenant.restore"], "pbe.activation"); kind != "new" {
			t.Errorf("tenant.restore's pbe.activation %q, want new (a tenant never written)", kind)
		}
		if cached := attr(byName["gateway.route"], "pbe.route_cached"); cached != "false" {
			t.Errorf("gateway.route's pbe.route_cached %q, want false (a tenant never served)", cached)
		}
	})
	t.Run("an order the control plane sends a node", func(t *testing.T) {
		const trace, client = "8bf92f3577b34da6a3ce929d0e0e473a", "40f067aa0ba902bb"
		admin := map[string]string{"email": "admin@traced.test", "password": "password-traced"}
		mustStatus(t, gw.api("POST", "/api/cp/tenants/traced/admins", admin, "traceparent", "00-"+trace+"-"+client+"-01"), http.StatusCreated)
		spans := spanTree{t: t, exp: exp, trace: trace}.wait("gateway", "cp.api", "tenant.order")
		byName := checkTree(t, spans, client, map[string]string{"cp.api": "gateway", "tenant.order": "cp.api"})
		if got, want := attr(byName["tenant.order"], "url.path"), "/internal/tenants/traced/superusers"; got != want {
			t.Errorf("tenant.order's url.path %q, want %s", got, want)
		}
	})
	// The lone node drains itself when it stops: leave it nothing to move.
	mustStatus(t, gw.api("DELETE", "/api/cp/tenants/traced", nil), http.StatusOK)
}

// attr returns a span's string attribute key.
func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestTracing_ForwardedWriteIsOneTrace: a write sent to a control-plane
// follower is forwarded to the leader, and the leader's span continues the
// follower's.
func TestTracing_ForwardedWriteIsOneTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes")
	}
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	c := startClusterWith(t, "cpt", 3, "--otlp-endpoint", srv.URL)
	follower := (c.leader() + 1) % 3

	const trace, client = "8bf92f3577b34da6a3ce929d0e0e4740", "40f067aa0ba902bb"
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+c.http[follower]+"/api/cp/tenants", strings.NewReader(`{"id": "forwarded"}`))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+trace+"-"+client+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create through a follower: %d", resp.StatusCode)
	}
	rcv.find(t, trace, "raft.apply")
	var apis []receivedSpan
	deadline := time.Now().Add(30 * time.Second)
	for len(apis) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		rcv.mu.Lock()
		apis = apis[:0]
		for _, s := range rcv.spans {
			if s.trace == trace && s.name == "cp.api" {
				apis = append(apis, s)
			}
		}
		rcv.mu.Unlock()
	}
	var first, second *receivedSpan
	for i := range apis {
		switch apis[i].parent {
		case client:
			first = &apis[i]
		default:
			second = &apis[i]
		}
	}
	if first == nil || second == nil || second.parent != first.span {
		t.Fatalf("the follower's and the leader's cp.api spans are not one trace: %+v", apis)
	}
}
