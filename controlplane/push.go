package controlplane

import (
	"context"
	"time"

	"github.com/pbe/pbe/cluster"
)

// PushTimeout bounds telling a tenant's node about its changed record.
const PushTimeout = 10 * time.Second

// pushTenant gives the node serving t the tenant's changed record
// (durability, suspension, quota), so it applies from the next request. A
// node that cannot be told applies it when it next activates the tenant,
// which reads the registry.
func (c *ControlPlane) pushTenant(ctx context.Context, t cluster.Tenant) {
	if t.Node == "" || c.orders == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, PushTimeout)
	defer cancel()
	n, err := c.store.Node(t.Node)
	if err == nil {
		err = c.orders.UpdateTenant(ctx, n, t)
	}
	if err != nil {
		c.logger.Warn("tenant change not applied to the active tenant; it applies when the tenant next activates",
			"tenant", t.ID, "node", t.Node, "error", err)
	}
}
