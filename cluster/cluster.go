// Package cluster holds the types every part of pbe shares: the process
// configuration and mode, the registry records (tenants, nodes, tokens), their
// validation, and the errors the platform reports. It depends on nothing else
// in pbe.
package cluster

import "fmt"

// Mode is the role (or roles) a pbe process runs.
type Mode string

const (
	// ModeAllInOne runs control plane, tenant node and gateway in one process
	// on one port.
	ModeAllInOne Mode = "all-in-one"
	// ModeControlPlane runs only the control plane.
	ModeControlPlane Mode = "control-plane"
	// ModeTenantNode runs only a tenant node.
	ModeTenantNode Mode = "tenant-node"
	// ModeGateway runs only a gateway.
	ModeGateway Mode = "gateway"
)

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAllInOne, ModeControlPlane, ModeTenantNode, ModeGateway:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want all-in-one, control-plane, tenant-node or gateway)", s)
}

// Runs reports whether a process in mode m runs the role r.
func (m Mode) Runs(r Mode) bool { return m == r || m == ModeAllInOne }

// Member is a control-plane node as the registry records it: its Raft id,
// the address its Raft transport is reached at, and the address of its
// platform API (where followers forward writes when it leads).
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}
