package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/gateway"
	"github.com/pbe/pbe/health"
	"github.com/pbe/pbe/metrics"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tenantnode"
)

// startTimeout bounds start-up: opening state, electing or joining.
const startTimeout = 2 * time.Minute

// platform is one pbe process: its parts, in start order.
type platform struct {
	store    *store.Store
	cp       *controlplane.ControlPlane
	cpClient *controlplane.HTTPClient // tenant-node and gateway modes
	node     *tenantnode.Manager
	proxy    *gateway.Proxy
	server   *http.Server
	listener net.Listener
	nodeID   string

	// metrics is this process's registry; every role registers into it.
	metrics         *prometheus.Registry
	gwMetrics       *metrics.Gateway // nil when recording is off
	metricsServer   *http.Server     // --metrics-addr
	metricsListener net.Listener
}

func runServe(ctx context.Context, o serveOptions, stdout, stderr io.Writer) error {
	if o.clusterSecret == "" {
		o.clusterSecret = os.Getenv("PBE_CLUSTER_SECRET")
	}
	if err := o.validate(); err != nil {
		return usageError{err}
	}
	logger := newLogger(o, stderr)
	slog.SetDefault(logger)
	raiseFileLimit(logger)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return err
	}
	p, err := startPlatform(ctx, &o, ln, logger)
	if err != nil {
		return err
	}
	if p.node != nil {
		guardTenantHTTP(o)
	}
	token := ""
	if p.cp != nil {
		token = p.cp.GeneratedToken()
	}
	printBanner(stdout, o, token)

	errc := make(chan error, 1)
	go func() { errc <- p.server.Serve(p.listener) }()
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-errc:
		logger.Error("http server stopped", "error", err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if e := p.stop(stopCtx); e != nil && err == nil {
		err = e
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// tenantHTTPTimeout bounds connecting, the TLS handshake and waiting for
// response headers on connections PocketBase makes for a tenant.
const tenantHTTPTimeout = 30 * time.Second

// guardTenantHTTP makes http.DefaultClient, which PocketBase uses for a
// tenant's S3 storage and backups, its OAuth2 providers and files fetched
// by URL, connect only where the egress policy allows. pbe's own clients
// never use it. (The policy was checked by startPlatform.)
func guardTenantHTTP(o serveOptions) {
	g, _ := o.egressGuard()
	http.DefaultClient = &http.Client{Transport: g.Transport(tenantHTTPTimeout)}
}

// startPlatform opens every part of the mode behind listener ln; on
// failure it stops what it started (ln included).
func startPlatform(ctx context.Context, o *serveOptions, ln net.Listener, logger *slog.Logger) (_ *platform, err error) {
	p := &platform{listener: ln, nodeID: o.nodeID, metrics: metrics.NewRegistry()}
	if !o.disableMetrics {
		p.gwMetrics = metrics.NewGateway() // registered by the modes that run a gateway
	}
	o.httpAddr = ln.Addr().String()
	if o.publicURL == "" {
		o.publicURL = "http://{tenant}." + o.domain + portSuffix(o.httpAddr)
	}
	logger.Info("starting pbe", "version", version, "mode", o.mode, "node", o.nodeID, "http", o.httpAddr, "dir", o.dir,
		"objects", o.objects, "domain", o.domain, "public_url", o.publicURL, "max_tenants", o.maxTenants,
		"idle_timeout", o.idleTimeout, "allow_tenant_header", o.allowTenantHeader, "max_body", o.maxBody.String(),
		"delete_grace", o.deleteGrace, "raft_bind", o.raftBind, "raft_peers", o.raftPeers, "join", o.join,
		"min_free_disk", o.minFreeDisk.String(), "cluster_secret_set", o.clusterSecret != "",
		"admin_token_from_env", os.Getenv("PBE_ADMIN_TOKEN") != "", "metrics_addr", o.metricsAddr)
	defer func() {
		if err != nil {
			_ = p.stop(context.Background())
		}
	}()
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	checks := health.New()
	var handler http.Handler
	switch cluster.Mode(o.mode) {
	case cluster.ModeTenantNode:
		handler, err = p.startRemoteNode(startCtx, o, checks, logger)
	case cluster.ModeGateway:
		handler, err = p.startGateway(startCtx, o, checks, logger)
	default:
		handler, err = p.startWithControlPlane(startCtx, o, checks, logger)
	}
	if err != nil {
		return nil, err
	}
	if o.metricsAddr != "" {
		if err := p.startMetricsListener(o.metricsAddr, logger); err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	p.server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// startWithControlPlane starts the modes that run a control plane: it
// alone (control-plane) or with a tenant node and an in-process gateway
// (all-in-one).
func (p *platform) startWithControlPlane(ctx context.Context, o *serveOptions, checks *health.Checker, logger *slog.Logger) (http.Handler, error) {
	objects, err := storage.Open(ctx, o.objects)
	if err != nil {
		return nil, err
	}
	if err := p.startControlPlane(ctx, o, objects, logger); err != nil {
		return nil, err
	}
	checks.Add("control_plane", p.cp.Ready)
	checks.Add("disk", p.cp.DiskReady)
	checks.Add("object_store", objects.Ping)
	p.metrics.MustRegister(p.cp.MetricsCollector())
	handler := baseHandler(p.cp.Handler(), checks, guardedOps(p.metrics, o.clusterSecret, p.cp))
	if cluster.Mode(o.mode) != cluster.ModeAllInOne {
		return handler, nil
	}
	return p.startTenantNode(ctx, o, objects, p.cp, handler, checks, logger)
}

// startRemoteNode starts a tenant node in its own process: it talks to the
// control plane over HTTP and serves gateways and the control plane on its
// internal API.
func (p *platform) startRemoteNode(ctx context.Context, o *serveOptions, checks *health.Checker, logger *slog.Logger) (http.Handler, error) {
	objects, err := storage.Open(ctx, o.objects)
	if err != nil {
		return nil, err
	}
	cp := controlplane.NewHTTPClient(o.controlPlane, o.clusterSecret).WithRetry(5 * time.Second)
	if _, err := p.startTenantNode(ctx, o, objects, cp, nil, checks, logger); err != nil {
		return nil, err
	}
	p.cpClient = cp
	checks.Add("control_plane", p.node.ControlPlaneReady)
	checks.Add("disk", health.MinFreeDisk(o.dir, uint64(o.minFreeDisk), o.freeDisk))
	checks.Add("object_store", objects.Ping)
	return withHealth(withOps(p.node.Handler(o.clusterSecret), guardedOps(p.metrics, o.clusterSecret, nil)), checks), nil
}

// withHealth answers /healthz and /readyz, without credentials, in front
// of a tenant node's internal API; requests that name a tenant go to the
// node whatever their path.
func withHealth(node http.Handler, checks *health.Checker) http.Handler {
	live, ready := health.LiveHandler(), checks.ReadyHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get(cluster.HeaderTenant) == "" {
			switch r.URL.Path {
			case "/healthz":
				live.ServeHTTP(w, r)
				return
			case "/readyz":
				ready.ServeHTTP(w, r)
				return
			}
		}
		node.ServeHTTP(w, r)
	})
}

// startControlPlane opens the registry store and starts the control plane.
func (p *platform) startControlPlane(ctx context.Context, o *serveOptions, objects storage.ObjectStore, logger *slog.Logger) error {
	cpDir := filepath.Join(o.dir, "control-plane")
	var err error
	if p.store, err = store.Open(filepath.Join(cpDir, "state"), logger); err != nil {
		return fmt.Errorf("open control-plane store: %w", err)
	}
	cfg := controlplane.DefaultConfig()
	cfg.NodeID = o.nodeID
	cfg.Raft.Dir = filepath.Join(cpDir, "raft")
	cfg.Raft.BindAddr = o.raftBind
	cfg.Raft.AdvertiseAddr = o.raftAdvertise
	cfg.Raft.ClusterSecret = o.clusterSecret
	cfg.Raft.Peers, _ = parsePeers(o.raftPeers)
	cfg.Raft.Join = o.join != ""
	if o.join != "" {
		cfg.Join = strings.Split(o.join, ",")
	}
	cfg.APIAddr = o.advertiseHTTP
	if cfg.APIAddr == "" {
		cfg.APIAddr = o.httpAddr
	}
	cfg.ClusterSecret = o.clusterSecret
	cfg.AdminToken = os.Getenv("PBE_ADMIN_TOKEN")
	cfg.AdminTokenFile = filepath.Join(o.dir, "admin.token")
	cfg.DeleteGrace = o.deleteGrace
	cfg.PurgeInterval = o.purgeInterval
	cfg.BackupTick = o.backupTick
	cfg.ArchiveAfter, cfg.ArchiveTick = o.archiveAfter, o.archiveTick
	cfg.ArchiveStorageClass = o.archiveStorageClass
	cfg.PublicURL = o.publicURL
	cfg.Domain = o.domain
	cfg.Lease = o.lease
	cfg.Disk = store.DefaultDiskConfig(o.dir)
	cfg.Disk.MinFreeBytes = uint64(o.minFreeDisk)
	cfg.Disk.CheckInterval = o.diskCheckInterval
	cfg.Disk.FreeBytes = o.freeDisk
	cfg.Logger = logger
	cfg.BaseURL = strings.Replace(o.publicURL, "{tenant}.", "", 1)
	cfg.DefaultQuota = cluster.UserQuota{MaxTenants: o.defaultMaxTenants}
	if cfg.Mail, cfg.MailTemplates, err = newMailer(o, o.dir, logger); err != nil {
		return err
	}
	if p.cp, err = controlplane.New(cfg, p.store, objects); err != nil {
		return err
	}
	return p.cp.Start(ctx)
}

// startTenantNode starts the tenant node of this process and, in
// all-in-one mode, returns the gateway that routes between it and the
// platform handler.
func (p *platform) startTenantNode(ctx context.Context, o *serveOptions, objects storage.ObjectStore, cp tenantnode.ControlPlane, platformHandler http.Handler, checks *health.Checker, logger *slog.Logger) (http.Handler, error) {
	cfg := tenantnode.DefaultConfig()
	cfg.NodeID = o.nodeID
	cfg.Addr = o.httpAddr
	if o.advertiseHTTP != "" {
		cfg.Addr = o.advertiseHTTP
	}
	cfg.DataDir = o.dir
	cfg.MaxTenants = o.maxTenants
	cfg.IdleTimeout = o.idleTimeout
	cfg.PublicURL = o.publicURL
	cfg.Replication.MonitorInterval = o.replicationInterval
	cfg.Replication.SyncInterval = o.replicationInterval
	cfg.Logger = logger
	cfg.DisableMetrics = o.disableMetrics
	cfg.DisableHooks = !o.hooks
	hc, err := o.hooksConfig()
	if err != nil {
		return nil, err
	}
	cfg.Hooks = hc
	if cfg.Egress, err = o.egressGuard(); err != nil {
		return nil, err
	}
	if p.node, err = tenantnode.NewManager(cfg, objects, cp); err != nil {
		return nil, err
	}
	p.metrics.MustRegister(p.node.MetricsCollector())
	if p.cp != nil {
		p.cp.SetOrders(localOrders{p.node})
	}
	if err := p.node.Start(ctx); err != nil {
		return nil, err
	}
	checks.Add("tenant_node", func(context.Context) error { return p.node.Ready() })
	if platformHandler == nil {
		return nil, nil
	}

	gwCfg := gateway.DefaultConfig()
	gwCfg.Domain = o.domain
	gwCfg.AllowTenantHeader = o.allowTenantHeader
	gwCfg.MaxBodyBytes = int64(o.maxBody)
	gwCfg.Logger = logger
	gwCfg.Metrics = p.registerGatewayMetrics()
	gw, err := gateway.New(gwCfg, platformHandler, p.node)
	if err != nil {
		return nil, err
	}
	return gw.WithDomains(storeDomains{p.cp}), nil
}

// registerGatewayMetrics registers the gateway's metrics (when recording
// is on) and returns them for its config.
func (p *platform) registerGatewayMetrics() *metrics.Gateway {
	if p.gwMetrics != nil {
		p.metrics.MustRegister(p.gwMetrics)
	}
	return p.gwMetrics
}

// storeDomains resolves custom domains from the local registry
// (all-in-one).
type storeDomains struct{ cp *controlplane.ControlPlane }

func (s storeDomains) TenantForDomain(host string) (string, bool) {
	t, err := s.cp.TenantByDomain(host)
	if err != nil || t.State != cluster.TenantActive {
		return "", false
	}
	return t.ID, true
}

// stop shuts the parts down in reverse order: no new connections, tenants
// stopped (realtime streams end, final sync), then the control plane.
func (p *platform) stop(ctx context.Context) error {
	var errs []error
	if p.cpClient != nil && p.node != nil {
		p.drainSelf(ctx) // a tenant node hands its tenants over before it exits
	}
	shutdownDone := make(chan struct{})
	if p.server != nil {
		go func() {
			defer close(shutdownDone)
			if err := p.server.Shutdown(ctx); err != nil {
				_ = p.server.Close()
			}
		}()
	} else {
		close(shutdownDone)
	}
	if p.listener != nil {
		p.listener.Close() // in case Serve never ran
	}
	if p.metricsServer != nil {
		_ = p.metricsServer.Close() // scrapes are short: no need to drain them
	}
	if p.node != nil {
		if err := p.node.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop tenant node: %w", err))
		}
	}
	<-shutdownDone
	if p.proxy != nil {
		if err := p.proxy.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop gateway: %w", err))
		}
	}
	if p.cp != nil {
		if err := p.cp.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop control plane: %w", err))
		}
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close control-plane store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// drainPoll is how often a stopping tenant node checks its drain.
const drainPoll = 200 * time.Millisecond

// drainSelf asks the control plane to move every tenant off this node and
// waits (within ctx) until none is left, serving requests meanwhile.
func (p *platform) drainSelf(ctx context.Context) {
	logger := slog.Default()
	if err := p.cpClient.DrainNode(ctx, p.nodeID); err != nil {
		logger.Warn("drain before stopping failed; tenants fail over after the lease instead", "error", err)
		return
	}
	for {
		n, err := p.cpClient.Node(ctx, p.nodeID)
		if err == nil && n.Assigned == 0 {
			logger.Info("drained: no tenants left on this node")
			return
		}
		select {
		case <-ctx.Done():
			logger.Warn("stopping before the drain finished; the rest fail over after the lease")
			return
		case <-time.After(drainPoll):
		}
	}
}

// baseHandler serves the base domain: the platform API, health and the
// (guarded) metrics.
func baseHandler(api http.Handler, checks *health.Checker, opsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/cp/", api)
	mux.Handle("GET "+metricsPath, opsHandler)
	mux.Handle("GET "+pprofPath, opsHandler)
	mux.Handle("GET /healthz", health.LiveHandler())
	mux.Handle("GET /readyz", checks.ReadyHandler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, `{"name":"pbe","api":"/api/cp/","health":"/healthz","ready":"/readyz"}`+"\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		cluster.WriteJSONError(w, http.StatusNotFound, cluster.ErrorBody{
			Code: "not_found", Message: "no such page on the platform host; tenants are served at {tenant}." + hostOnly(r.Host),
		})
	})
	return mux
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func printBanner(w io.Writer, o serveOptions, token string) {
	tokenFile := filepath.Join(o.dir, "admin.token")
	fmt.Fprintf(w, "pbe %s is serving on http://%s\n", o.mode, o.httpAddr)
	if cluster.Mode(o.mode) == cluster.ModeControlPlane {
		fmt.Fprintf(w, "  platform API:  http://%s/api/cp/  (Authorization: Bearer <operator token>)\n", o.httpAddr)
		if token != "" {
			fmt.Fprintf(w, "\nOperator token (shown once; saved to %s):\n  %s\n", tokenFile, token)
		}
		return
	}
	base := "http://" + o.domain + portSuffix(o.httpAddr)
	fmt.Fprintf(w, "  platform API:  %s/api/cp/  (Authorization: Bearer <operator token>)\n", base)
	fmt.Fprintf(w, "  tenants:       %s/api/  (admin UI: %s/_/)\n", o.publicURL, o.publicURL)
	if token != "" {
		fmt.Fprintf(w, "\nOperator token (shown once; saved to %s):\n  %s\n", tokenFile, token)
	}
	fmt.Fprintf(w, "\nCreate a tenant:\n  curl -X POST %s/api/cp/tenants -H \"Authorization: Bearer $(cat %s)\" \\\n"+
		"    -H 'Content-Type: application/json' -d '{\"id\":\"acme\",\"admin\":{\"email\":\"admin@acme.test\",\"password\":\"change-me-now\"}}'\n"+
		"  or: go run ./cmd/pbe tenant create acme --admin-email admin@acme.test --admin-password change-me-now\n", base, tokenFile)
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// active tenant holds a few SQLite files open.
func raiseFileLimit(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			logger.Warn("could not raise the open-file limit", "error", err)
			return
		}
	}
	logger.Debug("open-file limit", "limit", strconv.FormatUint(lim.Cur, 10))
}

// localOrders gives the control plane's orders to the node in this
// process (all-in-one).
type localOrders struct{ m *tenantnode.Manager }

func (l localOrders) Release(ctx context.Context, _ cluster.Node, tenant string, epoch uint64) error {
	return l.m.Release(ctx, tenant, epoch)
}

func (l localOrders) Activate(ctx context.Context, _ cluster.Node, tenant string) error {
	return l.m.Activate(ctx, tenant)
}

func (l localOrders) CreateSuperuser(ctx context.Context, _ cluster.Node, tenant, email, password string) error {
	return l.m.CreateSuperuser(ctx, tenant, email, password)
}

func (l localOrders) UpdateTenant(ctx context.Context, _ cluster.Node, t cluster.Tenant) error {
	_, err := l.m.UpdateTenant(ctx, t)
	return err
}

func (l localOrders) Remove(ctx context.Context, _ cluster.Node, tenant string) error {
	return l.m.Remove(ctx, tenant)
}
