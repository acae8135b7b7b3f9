// Package controlplane is pbe's control plane: the tenant registry and the
// operator tokens, kept in Badger and replicated by Raft, served as the
// platform API under /api/cp/.
//
// Invariants:
//   - A write is acknowledged only after Raft committed and applied it; the
//     command's own error (duplicate id, unknown tenant, stale version)
//     reaches the caller as its HTTP status, never as a success.
//   - Every write carries a request id (the client's Idempotency-Key, or a
//     fresh one), so a retried write applies at most once.
//   - A deleted tenant's object-store data is kept until its PurgeAfter;
//     only then does the leader remove the data and, after that, the record.
package controlplane

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"

	"github.com/pbe/pbe/auth"
	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/raft"
	"github.com/pbe/pbe/controlplane/store"
	"github.com/pbe/pbe/email"
	"github.com/pbe/pbe/internal/atomicfile"
	"github.com/pbe/pbe/storage"
	"github.com/pbe/pbe/tracing"
)

// Config configures a control-plane node.
type Config struct {
	// NodeID names this control-plane node (and, in all-in-one, the tenant
	// node new tenants are assigned to).
	NodeID string
	// Raft configures consensus; its NodeID and Dir default from this Config.
	Raft raft.Config
	// AdminToken, if set, is the initial operator token (PBE_ADMIN_TOKEN).
	AdminToken string
	// AdminTokenFile is where a generated initial token is written (0600).
	AdminTokenFile string
	// DeleteGrace is how long a deleted tenant's data is kept for restore.
	DeleteGrace time.Duration
	// PurgeInterval is how often the leader purges tenants past their grace.
	PurgeInterval time.Duration
	// SessionPruneInterval is how often the leader deletes expired
	// customer sessions (0: DefaultSessionPruneInterval).
	SessionPruneInterval time.Duration
	// ApplyTimeout bounds one write through Raft.
	ApplyTimeout time.Duration
	// MaxBodyBytes limits platform API request bodies.
	MaxBodyBytes int64
	// PublicURL is the tenant URL template ("{tenant}" is replaced) shown
	// in API responses.
	PublicURL string
	// Domain is the platform's base domain: custom domains may not be it or
	// under it.
	Domain string
	// APIAddr is the host:port where the other control-plane nodes reach
	// this node's platform API. The leader publishes it, so followers can
	// forward writes to it.
	APIAddr string
	// ClusterSecret authenticates nodes to each other (joining the cluster).
	ClusterSecret string
	// Join lists platform API URLs of existing members; a node started with
	// Raft.Join asks them to add it until one does.
	Join []string
	// Disk configures free-space monitoring and Badger value-log GC. A zero
	// Dir disables it.
	Disk store.DiskConfig
	// Lease is how long a tenant node's heartbeat keeps it entitled to
	// serve its tenants.
	Lease time.Duration
	// FailoverMargin is how long after a lease runs out (as the leader
	// counts) the node is declared down and its tenants move.
	FailoverMargin time.Duration
	// Logger receives the control plane's logs.
	Logger *slog.Logger

	// BaseURL is the platform API's public URL (e-mailed links point at
	// it), e.g. http://localhost:8090.
	BaseURL string
	// Mail sends the platform's e-mails; nil logs them instead.
	Mail email.Sender
	// MailTemplates renders them; nil uses the built-in templates.
	MailTemplates *email.Templates
	// DefaultQuota is a new customer's quota.
	DefaultQuota cluster.UserQuota
	// BackupTick is how often the leader looks for scheduled backups due.
	BackupTick time.Duration
	// ArchiveAfter is how long a tenant stays idle before it is archived
	// (0: never); ArchiveTick how often the leader looks.
	ArchiveAfter time.Duration
	ArchiveTick  time.Duration
	// ArchiveStorageClass is the S3 storage class archives are written in
	// (DefaultArchiveStorageClass; "": the bucket's default). A store
	// without storage classes (a local directory) ignores it, and an S3
	// service that refuses it gets the archive in its default class.
	ArchiveStorageClass string
}

// Defaults.
const (
	DefaultDeleteGrace   = 7 * 24 * time.Hour
	DefaultPurgeInterval = time.Minute
	// DefaultSessionPruneInterval: expired sessions are refused at once;
	// deleting them is housekeeping.
	DefaultSessionPruneInterval = time.Hour
	DefaultApplyTimeout         = 10 * time.Second
	DefaultMaxBodyBytes         = 1 << 20
)

// DefaultConfig returns single-node defaults.
func DefaultConfig() Config {
	return Config{
		NodeID:         "local",
		Raft:           raft.DefaultConfig(),
		DeleteGrace:    DefaultDeleteGrace,
		PurgeInterval:  DefaultPurgeInterval,
		ApplyTimeout:   DefaultApplyTimeout,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		PublicURL:      "http://{tenant}.localhost:8090",
		Lease:          DefaultLease,
		BaseURL:        "http://localhost:8090",
		DefaultQuota:   cluster.UserQuota{MaxTenants: cluster.DefaultMaxTenants},
		FailoverMargin: DefaultFailoverMargin,
		Logger:         slog.Default(),

		ArchiveStorageClass: DefaultArchiveStorageClass,
	}
}

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("control plane: NodeID is required")
	case c.DeleteGrace < 0:
		return errors.New("control plane: DeleteGrace must not be negative")
	case c.PurgeInterval <= 0:
		return errors.New("control plane: PurgeInterval must be positive")
	case c.ApplyTimeout <= 0:
		return errors.New("control plane: ApplyTimeout must be positive")
	case c.MaxBodyBytes <= 0:
		return errors.New("control plane: MaxBodyBytes must be positive")
	case c.AdminToken != "" && len(c.AdminToken) < 16:
		return errors.New("control plane: AdminToken must be at least 16 characters")
	case c.Raft.Join && len(c.Join) == 0:
		return errors.New("control plane: Join must list at least one member's API URL when Raft.Join is set")
	case c.Raft.Join && c.ClusterSecret == "":
		return errors.New("control plane: ClusterSecret is required to join a cluster")
	case c.Lease < time.Second:
		return errors.New("control plane: Lease must be at least 1s")
	case c.FailoverMargin <= 0:
		return errors.New("control plane: FailoverMargin must be positive")
	case c.Logger == nil:
		return errors.New("control plane: Logger is required")
	}
	return validArchiveStorageClass(c.ArchiveStorageClass)
}

// ControlPlane is one control-plane node.
type ControlPlane struct {
	cfg     Config
	store   *store.Store
	objects storage.ObjectStore
	raft    *raft.Node
	disk    *store.DiskManager
	orders  NodeOrders
	fleet   *fleet
	orphans atomic.Bool // tenants may sit on a down node
	moving  sync.Map    // tenant id -> struct{} while a move runs
	logger  *slog.Logger
	proxy   *leaderProxy

	generatedToken string
	keyState
	limits *attemptLimiter
	hooks  *webhooks
	mailer *mailer

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New returns a control plane over st that purges deleted tenants' data
// from objects. Call Start before use.
func New(cfg Config, st *store.Store, objects storage.ObjectStore) (*ControlPlane, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Raft.NodeID == "" {
		cfg.Raft.NodeID = cfg.NodeID
	}
	c := &ControlPlane{
		cfg:     cfg,
		store:   st,
		objects: objects,
		logger:  cfg.Logger.With("component", "controlplane", "node", cfg.NodeID),
		quit:    make(chan struct{}),
	}
	c.signer = auth.NewSigner()
	c.authCache, _ = lru.New[string, cachedAuth](authCacheSize)
	c.limits = newAttemptLimiter()
	c.hooks = newWebhooks(c)
	c.mailer = newMailer(cfg, c.logger)
	c.proxy = newLeaderProxy(c)
	c.fleet = newFleet()
	c.orders = NewHTTPOrders(cfg.ClusterSecret)
	return c, nil
}

// SetOrders sets how the control plane gives orders to tenant nodes. Call
// it before Start; without it, orders go over HTTP with the cluster secret.
func (c *ControlPlane) SetOrders(o NodeOrders) { c.orders = o }

// Start starts Raft (joining the cluster through Config.Join when asked),
// waits for a leader (bounded by ctx), and starts the background work: the
// leader's duties, the purger and the disk manager. When this node leads at
// start, the initial operator token exists when Start returns.
func (c *ControlPlane) Start(ctx context.Context) error {
	node, err := raft.New(c.cfg.Raft, c.store, c.logger)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.raft = node
	if c.cfg.Disk.Dir != "" {
		c.disk = c.store.NewDiskManager(c.cfg.Disk)
		c.goBackground(c.disk.Run)
	}
	if c.cfg.Raft.Join && !node.IsMember() {
		if err := c.join(ctx); err != nil {
			return err
		}
	}
	if err := node.WaitForLeader(ctx); err != nil {
		return fmt.Errorf("wait for raft leader: %w", err)
	}
	if node.IsLeader() {
		if err := c.onLeader(ctx); err != nil {
			return err
		}
	}
	c.reloadKeys()
	c.goBackground(c.leadership)
	c.goBackground(c.purger)
	c.goBackground(c.sessionPruner)
	c.goBackground(c.failover)
	c.goBackground(c.hooks.run)
	c.goBackground(c.backupScheduler)
	c.goBackground(c.archiver)
	return nil
}

// goBackground runs fn until Stop.
func (c *ControlPlane) goBackground(fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	c.wg.Add(2)
	go func() { defer c.wg.Done(); <-c.quit; cancel() }()
	go func() { defer c.wg.Done(); fn(ctx) }()
}

// leadership does the leader's duties each time this node becomes leader.
func (c *ControlPlane) leadership(ctx context.Context) {
	changes := c.raft.LeadershipChanges()
	for {
		select {
		case <-ctx.Done():
			return
		case leader, ok := <-changes:
			if !ok {
				return
			}
			if !leader {
				c.fleet.lead(false)
				continue
			}
			if err := c.onLeader(ctx); err != nil {
				c.logger.Warn("leader duties", "error", err)
			}
		}
	}
}

// onLeader publishes this node's API address (followers forward writes to
// it) and creates the initial operator token if there is none.
func (c *ControlPlane) onLeader(ctx context.Context) error {
	c.fleet.lead(true)
	c.orphans.Store(true)
	if err := c.publishSelf(ctx); err != nil {
		return err
	}
	if err := c.ensureSigningKey(ctx); err != nil {
		return fmt.Errorf("create token-signing key: %w", err)
	}
	return c.ensureOperatorToken(ctx)
}

// publishSelf records this node's addresses in the registry if they changed.
func (c *ControlPlane) publishSelf(ctx context.Context) error {
	self := cluster.Member{ID: c.cfg.NodeID, RaftAddr: c.raft.Addr(), APIAddr: c.cfg.APIAddr}
	if self.APIAddr == "" {
		self.APIAddr = self.RaftAddr // single node: nobody forwards to it
	}
	if m, err := c.store.Member(self.ID); err == nil && m == self {
		return nil
	}
	if _, err := c.apply(ctx, store.CmdSetMember, "", store.SetMember{Member: self}); err != nil {
		return fmt.Errorf("publish member %s: %w", self.ID, err)
	}
	return nil
}

// Stop stops the purger and Raft. Idempotent.
func (c *ControlPlane) Stop(ctx context.Context) error {
	var err error
	c.once.Do(func() {
		close(c.quit)
		c.wg.Wait()
		c.mailer.wait()
		if c.raft != nil {
			err = c.raft.Stop()
		}
	})
	return err
}

// GeneratedToken returns the operator token this start created and wrote to
// AdminTokenFile, or "" when none was created.
func (c *ControlPlane) GeneratedToken() string { return c.generatedToken }

// maxApplyLag is how far this node's applied index may trail the commit
// index and still count as ready.
const maxApplyLag = 1000

// Ready reports whether this node knows a leader and has applied nearly
// everything committed.
func (c *ControlPlane) Ready(ctx context.Context) error {
	if c.raft == nil {
		return errors.New("raft not started")
	}
	st := c.raft.Status()
	if st.LeaderID == "" {
		return errors.New("no raft leader")
	}
	if st.CommitIndex > st.AppliedIndex+maxApplyLag {
		return fmt.Errorf("applied index %d trails commit index %d", st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// DiskReady reports whether the data volume has enough free space.
func (c *ControlPlane) DiskReady(ctx context.Context) error {
	if c.disk == nil {
		return nil
	}
	return c.disk.Check(ctx)
}

// ensureOperatorToken creates the initial operator token when there is none.
func (c *ControlPlane) ensureOperatorToken(ctx context.Context) error {
	toks, err := c.store.Tokens()
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	secret, generated := c.cfg.AdminToken, false
	if secret == "" {
		secret, generated = cluster.NewTokenSecret(), true
	}
	hash := cluster.HashToken(secret)
	tok := cluster.Token{ID: cluster.TokenID(hash), Name: "initial", Hash: hash}
	if _, err := c.apply(ctx, store.CmdCreateToken, "initial-operator-token", store.CreateToken{Token: tok}); err != nil {
		return fmt.Errorf("create initial operator token: %w", err)
	}
	if generated {
		if err := writeSecretFile(c.cfg.AdminTokenFile, secret); err != nil {
			return err
		}
		c.generatedToken = secret
	}
	c.logger.Info("initial operator token created", "token_id", tok.ID)
	return nil
}

// writeSecretFile writes a secret with mode 0600: temp, fsync, rename.
func writeSecretFile(path, secret string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(secret+"\n"), 0o600)
}

// apply proposes a command through Raft and returns its result.
func (c *ControlPlane) apply(ctx context.Context, typ, requestID string, payload any) (any, error) {
	return c.applyAudited(ctx, typ, requestID, payload)
}

// applyAudited is apply for a command that records audit entries in the
// same Raft entry when it succeeds.
func (c *ControlPlane) applyAudited(ctx context.Context, typ, requestID string, payload any, audit ...cluster.AuditEntry) (any, error) {
	if requestID == "" {
		requestID = newRequestID()
	}
	ctx, span := tracing.Start(ctx, "raft.apply", attribute.String("pbe.command", typ))
	defer span.End()
	cmd, err := store.EncodeAuditedCommand(typ, requestID, time.Now().UTC(), payload, audit)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	return c.raft.Apply(ctx, cmd)
}

// newRequestID returns a unique request id that sorts by creation time:
// 8 bytes of Unix nanoseconds, then 8 random ones, in hex. Ids made close
// together sit close together in the state machine's request index, so
// checking a new one for a retry reads memory that recent checks read
// (with random ids, applying a create took about 15% longer).
func newRequestID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// Tenant returns the registry record of tenant id from this node's store.
func (c *ControlPlane) Tenant(ctx context.Context, id string) (cluster.Tenant, error) {
	if err := cluster.ValidateTenantIDSyntax(id); err != nil {
		return cluster.Tenant{}, err
	}
	return c.store.Tenant(id)
}

// AdvanceEpoch makes node the owner of t at a new epoch whose replica
// starts empty, restoring from t.Epoch. It fails with ErrStaleVersion if t
// changed since it was read.
func (c *ControlPlane) AdvanceEpoch(ctx context.Context, t cluster.Tenant, node string) (cluster.Tenant, error) {
	if t.Node != node {
		return cluster.Tenant{}, cluster.Errorf(cluster.ErrNotOwner, "node %s does not own tenant %s", node, t.ID)
	}
	epoch, from := t.Epoch+1, t.Epoch
	res, err := c.apply(ctx, store.CmdUpdateTenant, "", store.UpdateTenant{
		ID: t.ID, ExpectedVersion: t.Version, Node: &node, Epoch: &epoch, RestoreEpoch: &from,
	})
	if err != nil {
		return cluster.Tenant{}, err
	}
	nt, ok := res.(cluster.Tenant)
	if !ok {
		return cluster.Tenant{}, fmt.Errorf("advance epoch: unexpected result %T", res)
	}
	c.logger.Info("tenant epoch advanced", "tenant", t.ID, "epoch", nt.Epoch, "restore_epoch", nt.RestoreEpoch, "owner", node)
	return nt, nil
}

// tenantURL is the public URL of tenant id.
func (c *ControlPlane) tenantURL(id string) string {
	return strings.ReplaceAll(c.cfg.PublicURL, "{tenant}", id)
}

// TenantByDomain returns the tenant a custom domain serves.
func (c *ControlPlane) TenantByDomain(d string) (cluster.Tenant, error) {
	return c.store.TenantByDomain(d)
}

// purger removes, on the leader, the data and then the record of tenants
// whose grace period is over.
func (c *ControlPlane) purger(ctx context.Context) {
	c.everyTickAsLeader(ctx, c.cfg.PurgeInterval, c.purgeExpired)
}

// everyTickAsLeader calls fn every tick while this node leads, until ctx
// ends: the leader's periodic work.
func (c *ControlPlane) everyTickAsLeader(ctx context.Context, tick time.Duration, fn func(context.Context)) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.raft.IsLeader() {
			fn(ctx)
		}
	}
}

// sessionPruner deletes, on the leader, the sessions that expired: those
// of customers who never log in again (a login prunes the customer's
// own). Each command deletes a bounded number, so no Raft entry or Badger
// transaction grows with the number of customers.
func (c *ControlPlane) sessionPruner(ctx context.Context) {
	c.everyTickAsLeader(ctx, cmp.Or(c.cfg.SessionPruneInterval, DefaultSessionPruneInterval), c.pruneSessions)
}

// pruneSessions deletes every expired session, a batch per command.
func (c *ControlPlane) pruneSessions(ctx context.Context) {
	for more := true; more && ctx.Err() == nil; {
		res, err := c.apply(ctx, store.CmdPruneSessions, "", store.PruneSessions{Limit: sessionPruneBatch})
		if err != nil {
			c.logger.Warn("prune expired sessions", "error", err)
			return
		}
		p := res.(store.PrunedSessions)
		if p.Deleted > 0 {
			c.logger.Info("expired sessions deleted", "sessions", p.Deleted)
		}
		more = p.More
	}
}

// sessionPruneBatch is how many expired sessions one command deletes.
const sessionPruneBatch = 1000

func (c *ControlPlane) purgeExpired(ctx context.Context) {
	deleted, err := c.store.Tenants(store.TenantFilter{State: cluster.TenantDeleted})
	if err != nil {
		c.logger.Error("purge: list deleted tenants", "error", err)
		return
	}
	now := time.Now()
	for _, t := range deleted {
		if t.PurgeAfter == nil || t.PurgeAfter.After(now) {
			continue
		}
		if err := c.purge(ctx, t); err != nil {
			c.logger.Error("purge tenant", "tenant", t.ID, "error", err)
		}
	}
}

// purge deletes a deleted tenant's object-store data, then its record.
func (c *ControlPlane) purge(ctx context.Context, t cluster.Tenant) error {
	id := t.ID
	prefix, err := storage.TenantPrefix(id)
	if err != nil {
		return err
	}
	// The node may still be closing the tenant (the delete's own remove
	// order runs after the registry write): its final sync must not land
	// after the objects are gone. Removing again waits for it.
	c.removeFromNode(ctx, t)
	if c.objects != nil {
		if err := c.objects.DeletePrefix(ctx, prefix); err != nil {
			return fmt.Errorf("delete objects: %w", err)
		}
	}
	if _, err := c.apply(ctx, store.CmdPurgeTenant, fmt.Sprintf("purge-%s-%d", id, t.Version), store.PurgeTenant{ID: id}); err != nil {
		return err
	}
	c.logger.Info("tenant purged", "tenant", id)
	return nil
}
