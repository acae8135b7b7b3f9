package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/controlplane/raft"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/gateway"
	"github.com/pbe/pbe/internal/egress"
	_ "github.com/pbe/pbe/storage/file" // file:// object stores
	_ "github.com/pbe/pbe/storage/s3"   // s3:// object stores
	"github.com/pbe/pbe/tenantnode"
	"github.com/pbe/pbe/tenantnode/hooks"
)

// serveOptions are the settings of 'pbe serve'.
type serveOptions struct {
	configFile          string
	mode                string
	httpAddr            string
	dir                 string
	objects             string
	domain              string
	publicURL           string
	nodeID              string
	maxTenants          int
	idleTimeout         time.Duration
	allowTenantHeader   bool
	maxBody             byteSize
	deleteGrace         time.Duration
	replicationInterval time.Duration
	shutdownTimeout     time.Duration
	purgeInterval       time.Duration                     // not a flag: how often deleted tenants past their grace are purged
	backupTick          time.Duration                     // not a flag: how often scheduled backups are looked for
	archiveTick         time.Duration                     // not a flag: how often idle tenants are looked for
	diskCheckInterval   time.Duration                     // not a flag: how often free disk is measured
	freeDisk            func(path string) (uint64, error) // not a flag: measures free disk (nil: statfs)
	logLevel            string
	logFormat           string

	archiveAfter        time.Duration
	archiveStorageClass string
	otlpEndpoint        string

	// Tenant JavaScript hooks.
	hooks         bool
	hookCPULimit  time.Duration
	hookCPUMinute time.Duration
	hookRuntimes  int
	hookMemory    int64
	egressAllow   string
	egressDeny    string

	// Customer accounts and e-mail.
	smtp              string
	mailFrom          string
	mailTemplates     string
	defaultMaxTenants int

	// Control-plane cluster.
	advertiseHTTP string
	raftBind      string
	raftAdvertise string
	raftPeers     string
	join          string
	clusterSecret string
	minFreeDisk   byteSize
	controlPlane  string
	lease         time.Duration
	// metricsAddr serves /metrics without authentication (--metrics-addr).
	metricsAddr string
	// disableMetrics turns per-request metrics recording off (not a flag:
	// the benchmark that measures its cost sets it).
	disableMetrics bool
	// allowTenantHeaderSet records whether --allow-tenant-header was given
	// (its default differs between all-in-one and gateway).
	allowTenantHeaderSet bool
}

func defaultServeOptions() serveOptions {
	return serveOptions{
		mode:                string(cluster.ModeAllInOne),
		httpAddr:            "127.0.0.1:8090",
		dir:                 "pbe_data",
		domain:              "localhost",
		nodeID:              "local",
		maxTenants:          tenantnode.DefaultMaxTenants,
		idleTimeout:         tenantnode.DefaultIdleTimeout,
		allowTenantHeader:   true,
		maxBody:             gateway.DefaultMaxBodyBytes,
		deleteGrace:         controlplane.DefaultDeleteGrace,
		defaultMaxTenants:   cluster.DefaultMaxTenants,
		archiveAfter:        30 * 24 * time.Hour,
		archiveStorageClass: controlplane.DefaultArchiveStorageClass,
		replicationInterval: time.Second,
		shutdownTimeout:     30 * time.Second,
		purgeInterval:       controlplane.DefaultPurgeInterval,
		diskCheckInterval:   store.DefaultCheckInterval,
		logLevel:            "info",
		logFormat:           "text",
		minFreeDisk:         store.DefaultMinFreeBytes,
		lease:               controlplane.DefaultLease,
		hooks:               true,
		hookCPULimit:        hooks.DefaultCPULimit,
		hookCPUMinute:       hooks.DefaultCPUPerMinute,
		hookRuntimes:        hooks.DefaultRuntimes,
		hookMemory:          hooks.DefaultMemoryPerRun >> 20,
	}
}

func newServeCmd() *cobra.Command {
	o := defaultServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the platform (all-in-one by default: control plane, tenant node and gateway on one port)",
		Long: `Run the platform.

Every flag can also be set with an environment variable (PBE_ and the flag
name in capitals with underscores: --max-tenants is PBE_MAX_TENANTS) or in a
config file given with --config (YAML or JSON, keys are the flag names).
Precedence: flags, then environment, then config file, then defaults.
PBE_ADMIN_TOKEN sets the initial operator token (environment only); it
must be the same on every control-plane node of a cluster.

Modes: all-in-one (the default) runs everything on one port. control-plane
runs a control-plane node; several form a Raft cluster with --raft-bind and
the same --raft-peers on each, or a new node joins a running cluster with
--join.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), o.configFile); err != nil {
				return usageError{err}
			}
			o.allowTenantHeaderSet = cmd.Flags().Changed("allow-tenant-header")
			stop, err := setupTracing(cmd.Context(), o)
			if err != nil {
				return usageError{err}
			}
			defer stop()
			return runServe(cmd.Context(), o, os.Stdout, os.Stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "config file (YAML or JSON; keys are these flag names)")
	f.StringVar(&o.mode, "mode", o.mode, "role to run: all-in-one, control-plane, tenant-node or gateway")
	f.StringVar(&o.httpAddr, "http", o.httpAddr, "address to serve HTTP on")
	f.StringVar(&o.dir, "dir", o.dir, "data directory (control-plane state, tenant cache, admin.token)")
	f.StringVar(&o.objects, "objects", "", "object store URL where tenants are durable (default file://{dir}/objects)")
	f.StringVar(&o.domain, "domain", o.domain, "base domain: tenants are served at {tenant}.{domain}, the platform API at {domain}")
	f.StringVar(&o.publicURL, "public-url", "", "tenant URL template with {tenant}, as clients reach it (default http://{tenant}.{domain}:{port of --http})")
	f.StringVar(&o.nodeID, "node-id", o.nodeID, "this node's id")
	f.IntVar(&o.maxTenants, "max-tenants", o.maxTenants, "tenants active at once on this node; past it the least recently used idle one is evicted")
	f.DurationVar(&o.idleTimeout, "idle-timeout", o.idleTimeout, "evict a tenant after this long without requests")
	f.BoolVar(&o.hooks, "hooks", o.hooks, "run tenants' JavaScript hooks (their _hooks collection); false keeps the code stored but runs none")
	f.DurationVar(&o.hookCPULimit, "hook-cpu-limit", o.hookCPULimit, "CPU time one run of a tenant hook may use before it is stopped")
	f.DurationVar(&o.hookCPUMinute, "hook-cpu-per-minute", o.hookCPUMinute, "CPU time all of one tenant's hook runs may use per minute; past it they are refused with 429 until the minute ends")
	f.IntVar(&o.hookRuntimes, "hook-runtimes", o.hookRuntimes, "JavaScript runtimes per tenant: how many of its hooks may run at once")
	f.Int64Var(&o.hookMemory, "hook-memory", o.hookMemory, "MiB one run of a tenant hook may allocate before it is stopped (its runtime is then dropped)")
	f.StringVar(&o.egressAllow, "egress-allow", "", "comma-separated CIDRs tenants may reach although not public: their hooks' $http.send, the S3 and SMTP servers of their own settings, their OAuth2 providers (e.g. a mail relay on a private network)")
	f.StringVar(&o.egressDeny, "egress-deny", "", "comma-separated CIDRs tenants may not reach besides the non-public ranges (the platform's own public addresses)")
	f.BoolVar(&o.allowTenantHeader, "allow-tenant-header", o.allowTenantHeader, "let the X-Tenant-ID header select a tenant on the base domain (default true in all-in-one, false in gateway mode)")
	f.Var(&o.maxBody, "max-body", "largest tenant request body accepted (e.g. 32MiB); the platform API bounds its own")
	f.DurationVar(&o.deleteGrace, "delete-grace", o.deleteGrace, "how long a deleted tenant's data is kept so it can be restored")
	f.DurationVar(&o.replicationInterval, "replication-interval", o.replicationInterval, "how often tenant changes are shipped to the object store (the replication lag)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", o.shutdownTimeout, "how long a graceful stop may take")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", o.logFormat, "text or json")
	f.StringVar(&o.smtp, "smtp", "", "SMTP server for the platform's e-mails: smtp://user:pass@host:587 (STARTTLS required; ?tls=opportunistic to allow plain, ?tls=none for a loopback relay) or smtps://user:pass@host:465 (TLS); escape @ and : in the password as %40 and %3A (empty: e-mails are written to {dir}/mail/ and logged)")
	f.StringVar(&o.mailFrom, "mail-from", "", "sender (From) of the platform's e-mails, e.g. 'Acme <noreply@example.com>' (default pbe <noreply@{domain}>)")
	f.StringVar(&o.mailTemplates, "mail-templates", "", "directory of e-mail templates overriding the built-in ones: {name}.subject, {name}.txt, {name}.html for verify, reset, signup_exists, password_changed, quota_decision")
	f.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "send OpenTelemetry traces to this OTLP/HTTP endpoint, e.g. http://localhost:4318 (the standard OTEL_EXPORTER_OTLP_* variables work too; off when neither is set)")
	f.DurationVar(&o.archiveAfter, "archive-after", o.archiveAfter, "archive a tenant idle for this long: its history is folded into one archive and it is opened from it on its next request (0: never)")
	f.StringVar(&o.archiveStorageClass, "archive-storage-class", o.archiveStorageClass, "S3 storage class of tenant archives, e.g. STANDARD_IA, ONEZONE_IA or GLACIER_IR (empty: the bucket's default; ignored by a file:// store; a store that refuses it gets the default class)")
	f.IntVar(&o.defaultMaxTenants, "default-max-tenants", o.defaultMaxTenants, "how many tenants a new customer may create")
	f.StringVar(&o.advertiseHTTP, "advertise-http", "", "host:port other control-plane nodes reach this node's API at (default --http)")
	f.StringVar(&o.raftBind, "raft-bind", "", "host:port for Raft traffic between control-plane nodes (empty: single node, no Raft port)")
	f.StringVar(&o.raftAdvertise, "raft-advertise", "", "host:port peers reach this node's Raft port at (default --raft-bind)")
	f.StringVar(&o.raftPeers, "raft-peers", "", "initial control-plane voters as id=host:port,... (the same on every node; used once, to bootstrap)")
	f.StringVar(&o.join, "join", "", "join a running cluster through these control-plane API URLs (comma-separated)")
	f.StringVar(&o.clusterSecret, "cluster-secret", "", "secret shared by all nodes; authenticates Raft traffic and joins (prefer the env PBE_CLUSTER_SECRET)")
	f.Var(&o.minFreeDisk, "min-free-disk", "free space on the data volume below which the control plane refuses writes (507) and a tenant node reports not ready")
	f.StringVar(&o.controlPlane, "control-plane", "", "control-plane API addresses for tenant nodes and gateways (host:port or URL, comma-separated)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "host:port serving GET /metrics without authentication, for a private scrape network (empty: /metrics only on --http, with the cluster secret or an operator token)")
	f.DurationVar(&o.lease, "lease", o.lease, "how long a tenant node's heartbeat entitles it to serve its tenants (control plane); tenants fail over a little after it runs out")
	return cmd
}

// validate checks the options and fills derived defaults.
func (o *serveOptions) validate() error {
	mode, err := cluster.ParseMode(o.mode)
	if err != nil {
		return err
	}
	switch mode {
	case cluster.ModeAllInOne:
		if o.raftBind != "" || o.raftPeers != "" || o.join != "" {
			return errors.New("--raft-bind, --raft-peers and --join need --mode=control-plane (all-in-one runs a single control-plane node)")
		}
	case cluster.ModeControlPlane:
		if err := o.validateCluster(); err != nil {
			return err
		}
	case cluster.ModeTenantNode, cluster.ModeGateway:
		if o.controlPlane == "" {
			return fmt.Errorf("--mode=%s needs --control-plane (the control-plane nodes' API addresses)", mode)
		}
		if len(o.clusterSecret) < 16 {
			return fmt.Errorf("--mode=%s needs --cluster-secret (or PBE_CLUSTER_SECRET) of at least 16 characters", mode)
		}
		if mode == cluster.ModeTenantNode && o.advertiseHTTP == "" {
			if host, _, _ := net.SplitHostPort(o.httpAddr); host == "" || net.ParseIP(host).IsUnspecified() {
				return fmt.Errorf("--http %s listens on every interface: give --advertise-http, the host:port gateways reach this node at", o.httpAddr)
			}
		}
	}
	if _, _, err := net.SplitHostPort(o.httpAddr); err != nil {
		return fmt.Errorf("--http %q: want host:port, e.g. 127.0.0.1:8090", o.httpAddr)
	}
	if _, err := o.hooksConfig(); err != nil {
		return err
	}
	if o.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(o.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %q: want host:port, e.g. 10.0.0.5:9090", o.metricsAddr)
		}
	}
	if mode == cluster.ModeGateway && !o.allowTenantHeaderSet {
		o.allowTenantHeader = false
	}
	if o.objects == "" {
		abs, err := filepath.Abs(filepath.Join(o.dir, "objects"))
		if err != nil {
			return err
		}
		o.objects = "file://" + abs
	}
	if o.publicURL != "" && !strings.Contains(o.publicURL, "{tenant}") {
		return fmt.Errorf("--public-url %q must contain {tenant}", o.publicURL)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return err
	}
	if err := o.validateMail(); err != nil {
		return err
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	return nil
}

// validateCluster checks the control-plane cluster flags.
func (o *serveOptions) validateCluster() error {
	clustered := o.raftPeers != "" || o.join != ""
	switch {
	case clustered && o.raftBind == "":
		return errors.New("--raft-peers and --join need --raft-bind (the host:port for Raft traffic)")
	case o.raftPeers != "" && o.join != "":
		return errors.New("give either --raft-peers (bootstrap a new cluster) or --join (join a running one), not both")
	case o.raftBind != "" && len(o.clusterSecret) < 16:
		return errors.New("--cluster-secret (or PBE_CLUSTER_SECRET) of at least 16 characters is required with --raft-bind")
	}
	if _, err := parsePeers(o.raftPeers); err != nil {
		return err
	}
	if o.advertiseHTTP == "" {
		host, _, _ := net.SplitHostPort(o.httpAddr)
		if ip := net.ParseIP(host); clustered && (host == "" || (ip != nil && ip.IsUnspecified())) {
			return fmt.Errorf("--http %s listens on every interface: give --advertise-http, the host:port other nodes reach this API at", o.httpAddr)
		}
	} else if _, _, err := net.SplitHostPort(o.advertiseHTTP); err != nil {
		return fmt.Errorf("--advertise-http %q: want host:port", o.advertiseHTTP)
	}
	return nil
}

// parsePeers reads --raft-peers: id=host:port,id=host:port.
func parsePeers(s string) ([]raft.Peer, error) {
	var peers []raft.Peer
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if _, _, err := net.SplitHostPort(addr); !ok || id == "" || err != nil {
			return nil, fmt.Errorf("--raft-peers: %q is not id=host:port", part)
		}
		peers = append(peers, raft.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// portSuffix is ":port" of addr unless it is HTTP's default.
func portSuffix(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	if port == "" || port == "80" {
		return ""
	}
	return ":" + port
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(o serveOptions, w io.Writer) *slog.Logger {
	level, _ := parseLevel(o.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// egressGuard is where connections made for tenants may go: public
// addresses and --egress-allow, except --egress-deny and this node's own
// address when it is a public IP.
func (o *serveOptions) egressGuard() (egress.Guard, error) {
	var g egress.Guard
	var err error
	if g.Allow, err = parsePrefixes("--egress-allow", o.egressAllow); err != nil {
		return g, err
	}
	if g.Deny, err = parsePrefixes("--egress-deny", o.egressDeny); err != nil {
		return g, err
	}
	for _, addr := range []string{o.httpAddr, o.advertiseHTTP} {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
				g.Deny = append(g.Deny, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			}
		}
	}
	return g, nil
}

// hooksConfig is the tenant hooks' limits from the options.
func (o *serveOptions) hooksConfig() (hooks.Config, error) {
	c := hooks.DefaultConfig()
	c.CPULimit = o.hookCPULimit
	c.CPUPerMinute = o.hookCPUMinute
	c.Runtimes = o.hookRuntimes
	c.MemoryPerRun = o.hookMemory << 20
	g, err := o.egressGuard()
	if err != nil {
		return c, err
	}
	c.HTTPAllow, c.HTTPDeny = g.Allow, g.Deny
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("--hook-cpu-limit, --hook-cpu-per-minute, --hook-runtimes and --hook-memory: %w", err)
	}
	return c, nil
}

// parsePrefixes parses a comma-separated CIDR list (a bare IP is one
// address).
func parsePrefixes(flag, s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if ip, err := netip.ParseAddr(f); err == nil {
			ps = append(ps, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR range (e.g. 10.1.0.0/16)", flag, f)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}
