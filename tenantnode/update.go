package tenantnode

import (
	"context"

	"github.com/pbe/pbe/cluster"
)

// UpdateTenant applies t, the tenant's current registry record, to the
// tenant if it is active here at t.Epoch: its durability from the next
// write, its suspension and quotas from the next request. A tenant still
// activating is waited for; one that is not active here (or at another
// epoch) is left alone, and reads the registry when it next activates. It
// reports whether an active tenant took the record. Safe for concurrent
// use.
func (m *Manager) UpdateTenant(ctx context.Context, t cluster.Tenant) (bool, error) {
	if err := cluster.ValidateTenantIDSyntax(t.ID); err != nil {
		return false, err
	}
	if err := validateLive(t); err != nil {
		return false, err
	}
	m.mu.Lock()
	e, ok := m.active.Peek(t.ID)
	m.mu.Unlock()
	if !ok {
		return false, nil
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if e.err != nil || e.inst.tenant.Epoch != t.Epoch {
		return false, nil
	}
	inst := e.inst
	inst.syncWrites.Store(t.Durability == cluster.DurabilitySync)
	if t.Quota.StorageBytes > 0 && inst.quota.storageLimit.Load() == 0 {
		// The usage loop measures only while a storage quota applies: the
		// first one starts from a fresh measure.
		if err := inst.quota.measureDBs(); err != nil {
			m.logger.Warn("measuring the tenant's database size failed", "tenant", t.ID, "error", err)
		}
	}
	inst.quota.apply(t)
	m.logger.Info("tenant record applied", "tenant", t.ID, "epoch", t.Epoch,
		"durability", t.Durability, "suspended", t.Blocked(),
		"storage_quota", t.Quota.StorageBytes, "request_quota", t.Quota.RequestsPerDay)
	return true, nil
}

// validateLive checks the parts of a record that UpdateTenant applies.
func validateLive(t cluster.Tenant) error {
	switch {
	case t.Durability != cluster.DurabilitySync && t.Durability != cluster.DurabilityAsync:
		return cluster.Errorf(cluster.ErrInvalidInput, "durability must be %q or %q, not %q", cluster.DurabilityAsync, cluster.DurabilitySync, t.Durability)
	case t.Quota.StorageBytes < 0 || t.Quota.RequestsPerDay < 0:
		return cluster.Errorf(cluster.ErrInvalidInput, "quotas must be zero (unlimited) or positive")
	}
	return nil
}
