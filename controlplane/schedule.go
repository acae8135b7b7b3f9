package controlplane

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane/store"
)

// Scheduled backups: the leader looks at every tenant with a backup
// schedule each BackupTick and stores a named backup ("auto-{time}") when
// the newest one is older than the schedule's interval, then deletes the
// oldest automatic ones beyond the schedule's Keep. It works whether or
// not the tenant is active (archives come from the object store). Each
// backup, or its failure, is an event (backup.created, backup.failed).

// DefaultBackupTick is how often the leader looks for backups due.
const DefaultBackupTick = time.Minute

// MinCustomerBackupInterval is the shortest schedule a customer may set.
const MinCustomerBackupInterval = time.Hour

const autoBackupPrefix = "auto-"

const autoBackupLayout = "20060102T150405Z"

func (c *ControlPlane) backupScheduler(ctx context.Context) {
	c.eachActiveTenant(ctx, c.cfg.BackupTick, DefaultBackupTick, func(t cluster.Tenant) {
		if t.Backups != nil {
			c.scheduledBackup(ctx, t)
		}
	})
}

// eachActiveTenant calls fn with every active tenant every tick (def when
// tick is not positive), while this node leads and has an object store,
// until ctx ends: the leader's periodic work on tenants' data.
func (c *ControlPlane) eachActiveTenant(ctx context.Context, tick, def time.Duration, fn func(cluster.Tenant)) {
	if tick <= 0 {
		tick = def
	}
	c.everyTickAsLeader(ctx, tick, func(ctx context.Context) {
		if c.objects == nil {
			return
		}
		ts, err := c.store.Tenants(store.TenantFilter{State: cluster.TenantActive})
		if err != nil {
			return
		}
		for _, tn := range ts {
			if ctx.Err() != nil {
				return
			}
			fn(tn)
		}
	})
}

// scheduledBackup makes t's backup if one is due, and prunes old ones.
func (c *ControlPlane) scheduledBackup(ctx context.Context, t cluster.Tenant) {
	prefix, err := backupsPrefix(t.ID)
	if err != nil {
		return
	}
	keys, err := c.objects.List(ctx, prefix)
	if err != nil {
		return
	}
	var autos []string // names, oldest first
	for _, k := range keys {
		if name, ok := strings.CutSuffix(strings.TrimPrefix(k, prefix), ".tar.gz"); ok && strings.HasPrefix(name, autoBackupPrefix) {
			autos = append(autos, name)
		}
	}
	sort.Strings(autos)
	now := time.Now().UTC()
	due := len(autos) == 0
	if !due {
		last, err := time.Parse(autoBackupLayout, strings.TrimPrefix(autos[len(autos)-1], autoBackupPrefix))
		due = err != nil || now.Sub(last) >= time.Duration(t.Backups.EverySeconds)*time.Second
	}
	if !due {
		return
	}
	name := autoBackupPrefix + now.Format(autoBackupLayout)
	size, err := c.storeArchive(ctx, t, prefix+name+".tar.gz", "")
	ev := cluster.Event{Type: store.EventBackupCreated, Tenant: t.ID, User: t.Owner, Data: map[string]any{"name": name, "size": size}}
	if err != nil {
		if e, ok := cluster.AsError(err); ok && e.Code == cluster.ErrInvalidInput.Code {
			return // nothing written yet: nothing to back up
		}
		c.logger.Warn("scheduled backup failed", "tenant", t.ID, "error", err)
		ev = cluster.Event{Type: store.EventBackupFailed, Tenant: t.ID, User: t.Owner, Data: map[string]any{"name": name, "error": err.Error()}}
	} else {
		autos = append(autos, name)
		for len(autos) > t.Backups.Keep {
			if err := c.objects.Delete(ctx, prefix+autos[0]+".tar.gz"); err != nil {
				break
			}
			autos = autos[1:]
		}
	}
	if _, err := c.apply(ctx, store.CmdRecordEvents, "", store.RecordEvents{Events: []cluster.Event{ev}}); err != nil {
		c.logger.Warn("record backup event", "tenant", t.ID, "error", err)
	}
}
