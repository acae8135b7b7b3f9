package cluster

import (
	"regexp"
	"strings"
	"time"
)

// TenantState is the lifecycle state of a tenant in the registry.
type TenantState string

const (
	// TenantActive tenants are served.
	TenantActive TenantState = "active"
	// TenantDeleted tenants are no longer served; their object-store data is
	// kept until PurgeAfter so an operator can restore them.
	TenantDeleted TenantState = "deleted"
	// TenantArchived is how the API shows an active tenant that is
	// archived (ArchivedAt set). It is never stored: the registry keeps
	// such a tenant active, since it is still served (its next request
	// opens it), and the tenant nodes act on the stored state.
	TenantArchived TenantState = "archived"
)

// Durability says when a tenant's write is acknowledged.
type Durability string

const (
	// DurabilityAsync acknowledges after the local commit; the object store
	// trails by the replication lag (about a second).
	DurabilityAsync Durability = "async"
	// DurabilitySync acknowledges only after the commit is in the object store.
	DurabilitySync Durability = "sync"
)

// Tenant is a tenant's registry record, as the control plane stores it.
type Tenant struct {
	ID         string      `json:"id"`
	Name       string      `json:"name,omitempty"`
	State      TenantState `json:"state"`
	Durability Durability  `json:"durability"`
	// Node is the id of the node that owns the tenant at Epoch.
	Node string `json:"node,omitempty"`
	// Epoch grows by one with every change of owner. Replicas are written
	// under tenants/{id}/litestream/{epoch}/, so a stale owner writes only
	// where no reader looks.
	Epoch uint64 `json:"epoch"`
	// RestoreEpoch is the epoch whose replica a new owner restores from (the
	// previous owner's); zero for a tenant that has never been written.
	RestoreEpoch uint64 `json:"restore_epoch,omitempty"`
	// Domains are custom host names that serve the tenant besides
	// {id}.{base domain}; each belongs to one tenant at most.
	Domains []string `json:"domains,omitempty"`
	// Owner is the id of the customer who owns the tenant; empty for
	// tenants an operator created for the platform itself.
	Owner string `json:"owner,omitempty"`
	// Suspended tenants answer 403; OwnerSuspended follows the owner's
	// suspension.
	Suspended      bool `json:"suspended,omitempty"`
	OwnerSuspended bool `json:"owner_suspended,omitempty"`
	// Quota is what the tenant node enforces (the owner's per-tenant quota).
	Quota TenantQuota `json:"quota"`
	// Restore, while no epoch since the restore has a replica, says what
	// the tenant's next owner restores: a point in time of one of its own
	// epochs (a point-in-time restore) or of another tenant's (a fork).
	Restore *RestoreSpec `json:"restore,omitempty"`
	// ArchivedAt is when the tenant was archived for being idle: its
	// history was folded into one archive and no node holds it. The next
	// request (or an unarchive) opens it from the archive and clears this.
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
	// Backups schedules named backups (none when nil).
	Backups    *BackupPolicy `json:"backups,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	DeletedAt  *time.Time    `json:"deleted_at,omitempty"`
	PurgeAfter *time.Time    `json:"purge_after,omitempty"`
	// Version is the Raft index of the last change to this record.
	Version uint64 `json:"version"`
}

// BackupPolicy schedules a tenant's named backups: one every Every
// seconds, the newest Keep of them kept.
type BackupPolicy struct {
	EverySeconds int64 `json:"every_seconds"`
	Keep         int   `json:"keep"`
}

// RestoreSpec is a point in time of a tenant's replica history that the
// tenant restarts from.
type RestoreSpec struct {
	// From is the tenant whose replica is read ("" for the tenant itself).
	From  string    `json:"from,omitempty"`
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
	// Archive, when set, is the object key of a tenant archive (a named
	// backup or an import, under the tenant's own backups/) restored
	// instead of a point of a replica.
	Archive string `json:"archive,omitempty"`
	// Since is the tenant's epoch when the restore was asked for: epochs
	// from Since on hold what was written after the restore, and win over
	// it once any of them has data.
	Since uint64 `json:"since"`
}

// ShownState is the tenant's state as the API shows it: TenantArchived for
// an active tenant that is archived, else its stored State.
func (t Tenant) ShownState() TenantState {
	if t.State == TenantActive && t.ArchivedAt != nil {
		return TenantArchived
	}
	return t.State
}

// Blocked reports whether the tenant is suspended, by itself or with its
// owner: it then answers 403 to every request.
func (t Tenant) Blocked() bool { return t.Suspended || t.OwnerSuspended }

// Tenant id limits: a DNS label of 3 to 63 characters.
const (
	MinTenantIDLen = 3
	MaxTenantIDLen = 63
)

var tenantIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// reservedTenantIDs are hosts the platform uses or may use for itself.
var reservedTenantIDs = map[string]bool{
	"www": true, "api": true, "admin": true, "app": true,
	"cp": true, "control-plane": true, "gateway": true, "node": true,
	"internal": true, "system": true, "root": true, "platform": true,
	"dashboard": true, "console": true, "auth": true, "login": true,
	"sso": true, "status": true, "health": true, "metrics": true,
	"mail": true, "smtp": true, "static": true, "assets": true, "cdn": true,
	"docs": true, "help": true, "support": true, "billing": true,
	"localhost": true, "pbe": true, "raft": true,
}

// ValidateTenantID reports whether id may name a tenant: a DNS label of
// lowercase letters, digits and hyphens, 3 to 63 characters, not starting or
// ending with a hyphen, not an IDNA ("xn--") label, and not reserved. It is
// the gate every id passes before it reaches a path or an object key.
func ValidateTenantID(id string) error {
	if len(id) < MinTenantIDLen || len(id) > MaxTenantIDLen {
		return Errorf(ErrInvalidTenantID, "tenant id %q must be %d to %d characters long", clip(id), MinTenantIDLen, MaxTenantIDLen)
	}
	if !tenantIDPattern.MatchString(id) {
		return Errorf(ErrInvalidTenantID, "tenant id %q may contain only lowercase letters, digits and hyphens, and must start and end with a letter or digit", clip(id))
	}
	if len(id) >= 4 && id[2:4] == "--" {
		return Errorf(ErrInvalidTenantID, "tenant id %q must not have hyphens in its third and fourth characters (reserved for IDNA names)", id)
	}
	if reservedTenantIDs[id] {
		return Errorf(ErrReservedTenantID, "tenant id %q is reserved by the platform; choose another", id)
	}
	return nil
}

// clip shortens untrusted input before it is echoed in a message.
func clip(s string) string {
	const max = 70
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// ValidateTenantIDSyntax checks only the shape of id (a DNS label that can
// safely name a directory or an object key), not whether it is reserved. Use
// it where existing ids are read back; use ValidateTenantID for new ones.
func ValidateTenantIDSyntax(id string) error {
	if len(id) < MinTenantIDLen || len(id) > MaxTenantIDLen || !tenantIDPattern.MatchString(id) {
		return Errorf(ErrInvalidTenantID, "tenant id %q is not a valid DNS label of %d to %d lowercase letters, digits and hyphens", clip(id), MinTenantIDLen, MaxTenantIDLen)
	}
	return nil
}

// MaxDomains bounds the custom domains of one tenant.
const MaxDomains = 20

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateDomain reports whether d can be a tenant's custom domain: a
// lowercase DNS name of at least two labels, at most 253 characters.
func ValidateDomain(d string) error {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return Errorf(ErrInvalidInput, "domain %q must be a full host name such as app.example.com", clip(d))
	}
	for _, l := range labels {
		if !hostLabel.MatchString(l) {
			return Errorf(ErrInvalidInput, "domain %q is not a valid lowercase host name", clip(d))
		}
	}
	return nil
}
