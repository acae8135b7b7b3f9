package tenantnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/internal/egress"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tenantnode/hooks"
)

// Config configures a tenant node.
type Config struct {
	// NodeID names this node in the registry.
	NodeID string
	// Addr is the host:port gateways and the control plane reach this
	// node's internal API at.
	Addr string
	// HeartbeatInterval is how often the node renews its lease.
	HeartbeatInterval time.Duration
	// DataDir holds the local cache: {DataDir}/tenants/{id}/ per tenant.
	DataDir string
	// MaxTenants is how many tenants may be active at once; past it the
	// least recently used idle tenant is evicted.
	MaxTenants int
	// IdleTimeout evicts a tenant that has served no request for this long.
	IdleTimeout time.Duration
	// ActivationTimeout bounds restoring and opening one tenant.
	ActivationTimeout time.Duration
	// DrainTimeout bounds how long a stopping tenant waits for its in-flight
	// requests before it is shut down anyway.
	DrainTimeout time.Duration
	// PublicURL is the tenant's base URL template: "{tenant}" is replaced by
	// the tenant id. It becomes the tenant app's Application URL (links in
	// e-mails) when the tenant is created.
	PublicURL string
	// DataMaxOpenConns and AuxMaxOpenConns bound each tenant's concurrent
	// SQLite read connections (writes always use one more); the idle counts
	// are kept open between requests. Every connection holds file
	// descriptors and a page cache: at hundreds of tenants these, not
	// memory, set the limit, so open and idle are equal by default (no
	// connection churn under load, and a bounded number of descriptors).
	DataMaxOpenConns int
	DataMaxIdleConns int
	AuxMaxOpenConns  int
	AuxMaxIdleConns  int
	// Replication tunes Litestream.
	Replication storage.ReplicationConfig
	// Logger receives the node's logs.
	Logger *slog.Logger
	// DisableMetrics turns off per-request metrics recording (the
	// benchmark that measures its cost sets it); activations, evictions
	// and the scrape-time gauges are still exported.
	DisableMetrics bool
	// Hooks bounds the tenants' JavaScript hooks; DisableHooks runs none
	// (their code stays stored in each tenant).
	Hooks        hooks.Config
	DisableHooks bool
	// Egress is where connections made for a tenant may go: the SMTP
	// server of its mail settings here (its hooks' through Hooks, the rest
	// through the process's http.DefaultClient, which pbe serve guards).
	// The zero value allows public addresses only.
	Egress egress.Guard
}

// Defaults.
const (
	DefaultMaxTenants        = 200
	DefaultIdleTimeout       = 15 * time.Minute
	DefaultActivationTimeout = 2 * time.Minute
	DefaultDrainTimeout      = 30 * time.Second
	DefaultDataMaxOpenConns  = 4
	DefaultDataMaxIdleConns  = 4
	DefaultAuxMaxOpenConns   = 2
	DefaultAuxMaxIdleConns   = 1
	DefaultHeartbeatInterval = time.Second
)

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{
		NodeID:            "local",
		Addr:              "127.0.0.1:8090",
		HeartbeatInterval: DefaultHeartbeatInterval,
		DataDir:           "pbe_data",
		MaxTenants:        DefaultMaxTenants,
		IdleTimeout:       DefaultIdleTimeout,
		ActivationTimeout: DefaultActivationTimeout,
		DrainTimeout:      DefaultDrainTimeout,
		PublicURL:         "http://{tenant}.localhost:8090",
		DataMaxOpenConns:  DefaultDataMaxOpenConns,
		DataMaxIdleConns:  DefaultDataMaxIdleConns,
		AuxMaxOpenConns:   DefaultAuxMaxOpenConns,
		AuxMaxIdleConns:   DefaultAuxMaxIdleConns,
		Replication:       storage.DefaultReplicationConfig(),
		Logger:            slog.Default(),
		Hooks:             hooks.DefaultConfig(),
	}
}

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("tenant node: NodeID is required")
	case c.DataDir == "":
		return errors.New("tenant node: DataDir is required")
	case !cluster.ValidNodeID(c.NodeID):
		return errors.New("tenant node: NodeID may contain only letters, digits, dots, hyphens and underscores")
	case c.Addr == "":
		return errors.New("tenant node: Addr is required")
	case c.HeartbeatInterval <= 0:
		return errors.New("tenant node: HeartbeatInterval must be positive")
	case c.MaxTenants < 1:
		return errors.New("tenant node: MaxTenants must be at least 1")
	case c.IdleTimeout <= 0:
		return errors.New("tenant node: IdleTimeout must be positive")
	case c.ActivationTimeout <= 0:
		return errors.New("tenant node: ActivationTimeout must be positive")
	case c.DrainTimeout <= 0:
		return errors.New("tenant node: DrainTimeout must be positive")
	case c.DataMaxIdleConns < 1 || c.AuxMaxIdleConns < 1:
		return errors.New("tenant node: DataMaxIdleConns and AuxMaxIdleConns must be at least 1")
	case c.DataMaxOpenConns < c.DataMaxIdleConns || c.AuxMaxOpenConns < c.AuxMaxIdleConns:
		return errors.New("tenant node: DataMaxOpenConns and AuxMaxOpenConns must be at least their idle counts")
	case c.Logger == nil:
		return errors.New("tenant node: Logger is required")
	}
	if !c.DisableHooks {
		if err := c.Hooks.Validate(); err != nil {
			return fmt.Errorf("tenant node: %w", err)
		}
	}
	return c.Replication.Validate()
}
