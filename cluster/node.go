package cluster

import "time"

// NodeState is the lifecycle state of a tenant node in the registry.
type NodeState string

const (
	// NodeActive nodes receive new tenants.
	NodeActive NodeState = "active"
	// NodeDraining nodes keep serving what they own while their tenants are
	// moved away; they receive no new ones.
	NodeDraining NodeState = "draining"
	// NodeDown nodes lost their lease; their tenants were reassigned.
	NodeDown NodeState = "down"
)

// Node is a tenant node as the registry records it.
type Node struct {
	ID string `json:"id"`
	// Addr is the host:port of the node's internal API, where gateways send
	// tenant requests and the control plane sends orders.
	Addr  string    `json:"addr"`
	State NodeState `json:"state"`
	// Capacity is how many tenants the node keeps active at once.
	Capacity     int       `json:"capacity"`
	RegisteredAt time.Time `json:"registered_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	Version      uint64    `json:"version"`
}

// ValidNodeID reports whether id may name a node: 1 to 64 letters, digits,
// dots, hyphens or underscores.
func ValidNodeID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// TenantReport is what a node reports about one of its active tenants.
type TenantReport struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
	// TXID is the tenant's newest local transaction; ReplicatedTXID the
	// newest one in the object store.
	TXID             uint64    `json:"txid"`
	ReplicatedTXID   uint64    `json:"replicated_txid"`
	LastReplicatedAt time.Time `json:"last_replicated_at,omitzero"`
	// LagSeconds is how far the object store trails the local copy (0 when
	// in sync).
	LagSeconds float64 `json:"lag_seconds"`
	// Requests and Errors (5xx) count the tenant's requests since it was
	// activated on the node; Latency counts them per latency bucket
	// (cumulative, one per bound of the node's histogram, then the total).
	Requests uint64   `json:"requests,omitempty"`
	Errors   uint64   `json:"errors,omitempty"`
	Latency  []uint64 `json:"latency,omitempty"`
	// DBBytes and FileBytes are the tenant's storage: its databases' used
	// size and its uploaded files.
	DBBytes   int64 `json:"db_bytes,omitempty"`
	FileBytes int64 `json:"file_bytes,omitempty"`
	// GrowthBytesPerHour is how fast DBBytes+FileBytes grew over the last
	// hour (or since activation, when shorter), from measures a few
	// seconds apart; negative when data was deleted.
	GrowthBytesPerHour float64 `json:"growth_bytes_per_hour,omitempty"`
	// PeakRequestsMinute and PeakRequestsHour are the most requests that
	// arrived in one second over the last minute and the last hour (since
	// activation on the node).
	PeakRequestsMinute uint64 `json:"peak_rps_1m,omitempty"`
	PeakRequestsHour   uint64 `json:"peak_rps_1h,omitempty"`
	// RequestQuotaRefusals and StorageQuotaRefusals count the requests
	// refused since activation for the daily request quota (429) and the
	// storage quota (507).
	RequestQuotaRefusals uint64 `json:"request_quota_refusals,omitempty"`
	StorageQuotaRefusals uint64 `json:"storage_quota_refusals,omitempty"`
}

// Heartbeat is a node's periodic report to the control plane; it renews
// the node's lease.
type Heartbeat struct {
	Node     string         `json:"node"`
	Addr     string         `json:"addr"`
	Capacity int            `json:"capacity"`
	Active   int            `json:"active"`
	Load     float64        `json:"load"`
	Tenants  []TenantReport `json:"tenants,omitempty"`
}

// HeartbeatReply grants the lease. A node serves its tenants only while its
// lease, counted from when it sent the heartbeat, is unexpired.
type HeartbeatReply struct {
	LeaseMillis int64 `json:"lease_ms"`
	// State is the node's registry state.
	State NodeState `json:"state"`
	// Disowned lists reported tenants the node no longer owns at the
	// reported epoch: it must stop them at once.
	Disowned []string `json:"disowned,omitempty"`
}

// Route tells a gateway where a tenant is served.
type Route struct {
	Tenant string `json:"tenant"`
	Node   string `json:"node"`
	Addr   string `json:"addr"`
	Epoch  uint64 `json:"epoch"`
	// Domains are the tenant's custom domains.
	Domains []string `json:"domains,omitempty"`
}

// Headers of the platform's internal hops (gateway to node). The gateway
// removes every X-Pbe-* header from client requests.
const (
	// HeaderSecret carries the cluster secret.
	HeaderSecret = "X-Pbe-Secret"
	// HeaderClientIP is the client's address as the gateway or the
	// forwarding control-plane node that received the request saw it. The
	// control plane believes it only with a valid HeaderSecret.
	HeaderClientIP = "X-Pbe-Client-Ip"
	// HeaderTenant names the tenant a proxied request is for.
	HeaderTenant = "X-Pbe-Tenant"
	// HeaderEpoch is the ownership epoch the gateway routed at.
	HeaderEpoch = "X-Pbe-Epoch"
	// HeaderError is set by a tenant node on the errors it produces itself
	// (not the tenant's PocketBase): its value is the error code, so a
	// gateway can tell "retry elsewhere or later" from a tenant's own 503.
	HeaderError = "X-Pbe-Error"
)

// WatchEvent is one line of the control plane's watch stream
// (newline-delimited JSON), which keeps gateways' route caches current.
type WatchEvent struct {
	// Type is "snapshot" (the full state: it replaces everything the reader
	// knew), "tenant" (Route is the tenant's route, or nil when it has none
	// now), "node" or "ping".
	Type   string  `json:"type"`
	Index  uint64  `json:"index,omitempty"`
	Routes []Route `json:"routes,omitempty"`
	Nodes  []Node  `json:"nodes,omitempty"`
	Tenant string  `json:"tenant,omitempty"`
	Route  *Route  `json:"route,omitempty"`
	Node   *Node   `json:"node,omitempty"`
	// Domains, in a tenant event, are the tenant's custom domains (none
	// when it is deleted); in a snapshot, DomainMap maps every custom
	// domain of a live tenant to its tenant.
	Domains   []string          `json:"domains,omitempty"`
	DomainMap map[string]string `json:"domain_map,omitempty"`
}
