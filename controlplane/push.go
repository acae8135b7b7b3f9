package controlplane

import (
	"context"

	"github.com/pbe/pbe/cluster"
)

// pushTenant tells the node serving t about t's new record (durability,
// suspension, quota), so it applies from the next request.
func (c *ControlPlane) pushTenant(ctx context.Context, t cluster.Tenant) { c.applyDurability(ctx, t) }
