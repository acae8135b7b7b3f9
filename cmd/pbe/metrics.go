package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/metrics"
)

// metricsPath is where every role serves its metrics, and pprofPath its Go
// runtime profiles (net/http/pprof), behind the same guard.
const (
	metricsPath = "/metrics"
	pprofPath   = "/debug/pprof/"
)

// isOpsPath reports whether path is served by guardedOps.
func isOpsPath(path string) bool {
	return path == metricsPath || strings.HasPrefix(path, pprofPath)
}

// opsHandler serves reg's metrics and the process's runtime profiles. The
// command line is left out: it can hold the object store's credentials.
func opsHandler(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, metrics.Handler(reg))
	mux.HandleFunc("GET "+pprofPath, pprof.Index)
	mux.HandleFunc("GET "+pprofPath+"profile", pprof.Profile)
	mux.HandleFunc("GET "+pprofPath+"trace", pprof.Trace)
	mux.HandleFunc("GET "+pprofPath+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+pprofPath+"cmdline", func(w http.ResponseWriter, r *http.Request) {
		cluster.WriteJSONError(w, http.StatusNotFound, cluster.ErrorBody{Code: "not_found", Message: "the command line is not served: it can hold credentials"})
	})
	return mux
}

// operatorAuthenticator checks an operator token (the control plane, in
// the modes that run one).
type operatorAuthenticator interface {
	Authenticate(r *http.Request) (auth.Principal, error)
}

// guardedOps serves reg's metrics and the runtime profiles on the main
// listener to a caller with the cluster secret or, when ops is not nil, an
// operator token as its bearer credential: 401 without a valid credential,
// 403 for a customer's.
func guardedOps(reg prometheus.Gatherer, secret string, ops operatorAuthenticator) http.Handler {
	h := opsHandler(reg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := auth.BearerToken(r)
		if ok && auth.IsClusterSecret(secret, tok) {
			h.ServeHTTP(w, r)
			return
		}
		err := cluster.Errorf(cluster.ErrUnauthorized, "metrics and profiles need Authorization: Bearer <cluster secret or operator token> (metrics also: the --metrics-addr listener)")
		if ok && ops != nil {
			p, aerr := ops.Authenticate(r)
			switch {
			case aerr == nil && p.Kind == auth.KindOperator:
				h.ServeHTTP(w, r)
				return
			case aerr == nil:
				err = cluster.Errorf(cluster.ErrForbidden, "metrics and profiles are for operators; customers cannot read them")
			}
		}
		if errors.Is(err, cluster.ErrUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pbe"`)
		}
		cluster.WriteError(w, err)
	})
}

// withOps serves metrics and profiles (guarded) in front of a tenant node's
// internal API; requests that name a tenant always go to the node.
func withOps(node http.Handler, guarded http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isOpsPath(r.URL.Path) && r.Method == http.MethodGet && r.Header.Get(cluster.HeaderTenant) == "" {
			guarded.ServeHTTP(w, r)
			return
		}
		node.ServeHTTP(w, r)
	})
}

// startMetricsListener serves reg unauthenticated on --metrics-addr, a
// listener meant for a private scrape network. It serves nothing else.
func (p *platform) startMetricsListener(addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, metrics.Handler(p.metrics))
	p.metricsServer = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	p.metricsListener = ln
	go func() {
		if err := p.metricsServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener stopped", "error", err)
		}
	}()
	logger.Info("serving metrics without authentication", "addr", ln.Addr().String())
	return nil
}
