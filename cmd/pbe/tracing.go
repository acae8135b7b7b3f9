package main

import (
	"context"
	"time"

	"github.com/pbe/pbe/tracing"
)

// setupTracing installs OpenTelemetry tracing for the process (a no-op
// unless --otlp-endpoint or the OTEL_* variables name an endpoint) and
// returns what flushes it at exit.
func setupTracing(ctx context.Context, o serveOptions) (func(), error) {
	shutdown, err := tracing.Setup(ctx, o.otlpEndpoint, "pbe-"+o.mode, o.nodeID)
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}, nil
}
