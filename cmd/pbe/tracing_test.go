package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
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
