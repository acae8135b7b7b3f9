package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

// MaxNameLen bounds the display name of a tenant or a token, in bytes.
const MaxNameLen = 200

// applyCreateTenant stores a new active tenant. The id must not be taken by
// any tenant, live or deleted (a deleted tenant holds its id until purged).
func applyCreateTenant(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateTenant](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	t := p.Tenant
	if cerr := checkNewTenant(&t); cerr != nil {
		return nil, cerr, nil
	}
	old, found, err := getTenant(a.txn, t.ID)
	if err != nil {
		return nil, nil, err
	}
	if found {
		return nil, tenantExists(old), nil
	}
	if t.Owner != "" {
		if cerr, err := takeOwnerQuota(a.txn, &t); cerr != nil || err != nil {
			return nil, cerr, err
		}
		if err := a.txn.Set(ownerKey(t.Owner, t.ID), nil); err != nil {
			return nil, nil, err
		}
	}
	t.State = cluster.TenantActive
	t.CreatedAt, t.UpdatedAt = a.now, a.now
	t.DeletedAt, t.PurgeAfter = nil, nil
	t.Domains = nil // only set_domains, which indexes them, sets domains
	t.Version = a.index
	created := cluster.Event{Type: EventTenantCreated, Tenant: t.ID, User: t.Owner, Node: t.Node}
	if r := t.Restore; r != nil && r.From != "" {
		created.Data = map[string]any{"fork_of": r.From, "at": r.At}
	}
	a.event(created)
	return t, nil, putTenant(a.txn, t)
}

// applyDeleteTenant marks a live tenant deleted until PurgeAfter.
func applyDeleteTenant(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[DeleteTenant](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	if p.PurgeAfter.IsZero() {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "delete tenant %q: purge_after is required", p.ID), nil
	}
	t, cerr, err := liveTenant(a.txn, p.ID)
	if cerr != nil || err != nil {
		return nil, cerr, err
	}
	now, purge := a.now, p.PurgeAfter.UTC()
	t.State = cluster.TenantDeleted
	t.DeletedAt, t.PurgeAfter = &now, &purge
	t.UpdatedAt, t.Version = a.now, a.index
	a.event(cluster.Event{Type: EventTenantDeleted, Tenant: t.ID, User: t.Owner, Data: map[string]any{"purge_after": purge}})
	return t, nil, putTenant(a.txn, t)
}

// applyRestoreTenant makes a deleted tenant active again.
func applyRestoreTenant(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RestoreTenant](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	t, cerr, err := deletedTenant(a.txn, p.ID, "restore")
	if cerr != nil || err != nil {
		return nil, cerr, err
	}
	t.State = cluster.TenantActive
	t.DeletedAt, t.PurgeAfter = nil, nil
	t.UpdatedAt, t.Version = a.now, a.index
	a.event(cluster.Event{Type: EventTenantRestored, Tenant: t.ID, User: t.Owner})
	return t, nil, putTenant(a.txn, t)
}

// applyPurgeTenant removes a deleted tenant's record and returns the record
// as it was. A live tenant is never purged.
func applyPurgeTenant(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[PurgeTenant](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	t, cerr, err := deletedTenant(a.txn, p.ID, "purge")
	if cerr != nil || err != nil {
		return nil, cerr, err
	}
	if err := unindexDomains(a.txn, t); err != nil {
		return nil, nil, err
	}
	if t.Owner != "" {
		if err := a.txn.Delete(ownerKey(t.Owner, t.ID)); err != nil {
			return nil, nil, err
		}
	}
	a.event(cluster.Event{Type: EventTenantPurged, Tenant: t.ID, User: t.Owner})
	return t, nil, a.txn.Delete(tenantKey(t.ID))
}

// applyUpdateTenant changes the given fields of a live tenant.
func applyUpdateTenant(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[UpdateTenant](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	t, cerr, err := liveTenant(a.txn, p.ID)
	if cerr != nil || err != nil {
		return nil, cerr, err
	}
	if cerr := checkUpdate(&p, &t); cerr != nil {
		return nil, cerr, nil
	}
	tenantUpdateEvents(a, &p, t)
	if p.Name != nil {
		t.Name = *p.Name
	}
	if p.Node != nil {
		t.Node = *p.Node
		if t.Node != "" && t.ArchivedAt != nil {
			t.ArchivedAt = nil
			a.event(cluster.Event{Type: EventTenantUnarchived, Tenant: t.ID, User: t.Owner, Node: t.Node})
		}
	}
	if p.Archive {
		now := a.now
		t.ArchivedAt = &now
		a.event(cluster.Event{Type: EventTenantArchived, Tenant: t.ID, User: t.Owner})
	}
	if p.Epoch != nil {
		t.Epoch = *p.Epoch
	}
	if p.Restore != nil {
		t.Restore = p.Restore
	}
	if p.Backups != nil {
		t.Backups = p.Backups
		if p.Backups.EverySeconds == 0 {
			t.Backups = nil
		}
	}
	if p.RestoreEpoch != nil {
		t.RestoreEpoch = *p.RestoreEpoch
	}
	if p.Durability != nil {
		t.Durability = *p.Durability
	}
	if p.Suspended != nil {
		t.Suspended = *p.Suspended
	}
	if p.Quota != nil {
		t.Quota = *p.Quota
	}
	t.UpdatedAt, t.Version = a.now, a.index
	return t, nil, putTenant(a.txn, t)
}

// checkUpdate validates an update against the tenant's current record.
func checkUpdate(p *UpdateTenant, t *cluster.Tenant) *cluster.Error {
	if p.Name == nil && p.Node == nil && p.Epoch == nil && p.RestoreEpoch == nil && p.Durability == nil && p.Suspended == nil && p.Quota == nil && p.Backups == nil && !p.Archive {
		return cluster.Errorf(cluster.ErrInvalidInput, "update tenant %q: no field to change", p.ID)
	}
	if p.ExpectedVersion != 0 && p.ExpectedVersion != t.Version {
		return cluster.Errorf(cluster.ErrStaleVersion, "tenant %q is at version %d, not %d; re-read it and retry", t.ID, t.Version, p.ExpectedVersion)
	}
	if p.Epoch != nil && *p.Epoch <= t.Epoch {
		return cluster.Errorf(cluster.ErrStaleVersion, "tenant %q is at epoch %d; a new epoch must be greater, got %d", t.ID, t.Epoch, *p.Epoch)
	}
	if p.Name != nil && len(*p.Name) > MaxNameLen {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant name is %d bytes, at most %d allowed", len(*p.Name), MaxNameLen)
	}
	if p.Durability != nil {
		if _, cerr := checkDurability(*p.Durability); cerr != nil {
			return cerr
		}
	}
	if q := p.Quota; q != nil && (q.StorageBytes < 0 || q.RequestsPerDay < 0) {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant %q: quotas must not be negative", t.ID)
	}
	if b := p.Backups; b != nil && (b.EverySeconds < 0 || b.Keep < 0 || b.Keep > 1000 || b.EverySeconds > 0 && b.Keep == 0) {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant %q: a backup schedule needs a positive interval and keeps 1 to 1000 backups", t.ID)
	}
	if p.Archive && (p.Epoch == nil || p.Restore == nil || p.Restore.Archive == "" || p.Node == nil || *p.Node != "") {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant %q: archiving needs a new epoch, no node and the restore of its archive", t.ID)
	}
	if p.Restore != nil && p.Epoch == nil {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant %q: a restore goes with a new epoch", t.ID)
	}
	if cerr := checkRestore(p.Restore, t.ID); cerr != nil {
		return cerr
	}
	return nil
}

// takeOwnerQuota checks that t's owner may have one more live tenant and
// gives t the owner's per-tenant quota and suspension.
func takeOwnerQuota(txn *badger.Txn, t *cluster.Tenant) (*cluster.Error, error) {
	u, found, err := getUser(txn, t.Owner)
	if err != nil || !found {
		return userNotFound(found, t.Owner), err
	}
	if u.Suspended {
		return cluster.Errorf(cluster.ErrForbidden, "this account is suspended; contact the operator"), nil
	}
	ids, err := ownedTenantIDs(txn, u.ID)
	if err != nil {
		return nil, err
	}
	live := 0
	for _, id := range ids {
		o, found, err := getTenant(txn, id)
		if err != nil {
			return nil, err
		}
		if found && o.State == cluster.TenantActive {
			live++
		}
	}
	if live >= u.Quota.MaxTenants {
		return &cluster.Error{
			Code:    cluster.ErrQuotaExceeded.Code,
			Message: fmt.Sprintf("you have %d of at most %d tenants; delete one or ask for a higher max_tenants quota", live, u.Quota.MaxTenants),
			Data:    map[string]any{"quota": cluster.QuotaMaxTenants, "current": live, "max": u.Quota.MaxTenants},
		}, nil
	}
	t.Quota, t.OwnerSuspended = u.Quota.TenantQuota(), false
	return nil, nil
}

// checkNewTenant validates a tenant to create and fills in its default
// durability.
func checkNewTenant(t *cluster.Tenant) *cluster.Error {
	if err := cluster.ValidateTenantID(t.ID); err != nil {
		if cerr, ok := cluster.AsError(err); ok {
			return cerr
		}
		return cluster.Errorf(cluster.ErrInvalidTenantID, "%v", err)
	}
	if len(t.Name) > MaxNameLen {
		return cluster.Errorf(cluster.ErrInvalidInput, "tenant name is %d bytes, at most %d allowed", len(t.Name), MaxNameLen)
	}
	d, cerr := checkDurability(t.Durability)
	t.Durability = d
	if cerr != nil {
		return cerr
	}
	return checkRestore(t.Restore, t.ID)
}

// checkRestore validates tenant id's restore spec.
func checkRestore(r *cluster.RestoreSpec, id string) *cluster.Error {
	if r == nil {
		return nil
	}
	if r.Archive != "" {
		if !strings.HasPrefix(r.Archive, "tenants/"+id+"/backups/") || strings.Contains(r.Archive, "..") {
			return cluster.Errorf(cluster.ErrInvalidInput, "a restored archive must be one of the tenant's own backups")
		}
		return nil
	}
	if r.From != "" {
		if err := cluster.ValidateTenantIDSyntax(r.From); err != nil {
			return cluster.Errorf(cluster.ErrInvalidInput, "restore source: %v", err)
		}
	}
	if r.Epoch == 0 || r.At.IsZero() {
		return cluster.Errorf(cluster.ErrInvalidInput, "a restore needs an epoch and a time")
	}
	return nil
}

// checkDurability returns d, or async for "", or an error for an unknown
// mode.
func checkDurability(d cluster.Durability) (cluster.Durability, *cluster.Error) {
	switch d {
	case "":
		return cluster.DurabilityAsync, nil
	case cluster.DurabilityAsync, cluster.DurabilitySync:
		return d, nil
	}
	return d, cluster.Errorf(cluster.ErrInvalidInput, "unknown durability %q (want %q or %q)", d, cluster.DurabilityAsync, cluster.DurabilitySync)
}

// tenantExists is the error for creating a tenant whose id is taken.
func tenantExists(old cluster.Tenant) *cluster.Error {
	if old.State == cluster.TenantDeleted && old.PurgeAfter != nil {
		return cluster.Errorf(cluster.ErrTenantExists, "tenant %q was deleted and its id is held until %s; restore it, or purge it first",
			old.ID, old.PurgeAfter.UTC().Format(time.RFC3339))
	}
	if old.State == cluster.TenantDeleted {
		return cluster.Errorf(cluster.ErrTenantExists, "tenant %q was deleted and its id is held until it is purged", old.ID)
	}
	return cluster.Errorf(cluster.ErrTenantExists, "tenant %q already exists", old.ID)
}

// liveTenant returns the live tenant id; unknown or deleted is
// ErrTenantNotFound.
func liveTenant(txn *badger.Txn, id string) (cluster.Tenant, *cluster.Error, error) {
	t, found, err := getTenant(txn, id)
	switch {
	case err != nil:
		return t, nil, err
	case !found:
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %q not found", id), nil
	case t.State == cluster.TenantDeleted:
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %q is deleted", id), nil
	}
	return t, nil, nil
}

// deletedTenant returns the deleted tenant id; unknown is
// ErrTenantNotFound, live is ErrTenantNotDeleted. op names the operation
// for the message.
func deletedTenant(txn *badger.Txn, id, op string) (cluster.Tenant, *cluster.Error, error) {
	t, found, err := getTenant(txn, id)
	switch {
	case err != nil:
		return t, nil, err
	case !found:
		return t, cluster.Errorf(cluster.ErrTenantNotFound, "tenant %q not found", id), nil
	case t.State != cluster.TenantDeleted:
		return t, cluster.Errorf(cluster.ErrTenantNotDeleted, "cannot %s tenant %q: it is not deleted", op, id), nil
	}
	return t, nil, nil
}

func getTenant(txn *badger.Txn, id string) (cluster.Tenant, bool, error) {
	var t cluster.Tenant
	found, err := getJSON(txn, tenantKey(id), &t)
	return t, found, err
}

func putTenant(txn *badger.Txn, t cluster.Tenant) error {
	return setJSON(txn, tenantKey(t.ID), t)
}

// tenantUpdateEvents describes what an update changes of t.
func tenantUpdateEvents(a *applyCtx, p *UpdateTenant, t cluster.Tenant) {
	ev := func(typ string, data map[string]any) {
		a.event(cluster.Event{Type: typ, Tenant: t.ID, User: t.Owner, Node: t.Node, Data: data})
	}
	if p.Node != nil && *p.Node != t.Node && *p.Node != "" {
		if t.Node == "" {
			a.event(cluster.Event{Type: EventTenantPlaced, Tenant: t.ID, User: t.Owner, Node: *p.Node})
		} else {
			a.event(cluster.Event{Type: EventTenantMoved, Tenant: t.ID, User: t.Owner, Node: *p.Node, Data: map[string]any{"from": t.Node}})
		}
	}
	if p.Suspended != nil && *p.Suspended != t.Suspended {
		if *p.Suspended {
			ev(EventTenantSuspended, nil)
		} else {
			ev(EventTenantUnsuspended, nil)
		}
	}
	switch r := p.Restore; {
	case r == nil || p.Archive:
	case r.Archive != "":
		ev(EventTenantBackupRestored, map[string]any{"archive": r.Archive})
	default:
		ev(EventTenantPITR, map[string]any{"at": r.At, "from_epoch": r.Epoch})
	}
	if p.Quota != nil && *p.Quota != t.Quota {
		ev(EventTenantQuota, map[string]any{"storage_bytes": p.Quota.StorageBytes, "requests_per_day": p.Quota.RequestsPerDay})
	}
}
