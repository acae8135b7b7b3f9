package cluster

import (
	"net/mail"
	"strings"
	"time"
)

// User is a customer account (a cluster user) as the platform API shows
// it. Its password hash is kept by the store and never leaves it.
type User struct {
	ID         string     `json:"id"`
	Email      string     `json:"email"`
	Verified   bool       `json:"verified"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"`
	Suspended  bool       `json:"suspended"`
	Quota      UserQuota  `json:"quota"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// PasswordChangedAt is when the password was last set; a password-reset
	// link issued before it is void.
	PasswordChangedAt time.Time `json:"password_changed_at"`
	// Version is the Raft index of the last change to this record.
	Version uint64 `json:"version"`
}

// UserQuota is what a customer may use. Zero storage or requests means
// unlimited; MaxTenants is always enforced.
type UserQuota struct {
	// MaxTenants bounds the customer's live tenants.
	MaxTenants int `json:"max_tenants"`
	// StorageBytes bounds each tenant's databases plus uploaded files.
	StorageBytes int64 `json:"storage_bytes"`
	// RequestsPerDay bounds each tenant's requests per 24-hour window.
	RequestsPerDay int64 `json:"requests_per_day"`
}

// TenantQuota is what the tenant node enforces for one tenant (zero:
// unlimited). A customer's tenants carry their owner's quota.
type TenantQuota struct {
	StorageBytes   int64 `json:"storage_bytes,omitempty"`
	RequestsPerDay int64 `json:"requests_per_day,omitempty"`
}

// TenantQuota returns the per-tenant part of q.
func (q UserQuota) TenantQuota() TenantQuota {
	return TenantQuota{StorageBytes: q.StorageBytes, RequestsPerDay: q.RequestsPerDay}
}

// Quota kinds a customer can ask more of.
const (
	QuotaMaxTenants     = "max_tenants"
	QuotaStorageBytes   = "storage_bytes"
	QuotaRequestsPerDay = "requests_per_day"
)

// ValidQuotaKind reports whether k names a quota.
func ValidQuotaKind(k string) bool {
	return k == QuotaMaxTenants || k == QuotaStorageBytes || k == QuotaRequestsPerDay
}

// Get returns the value of quota kind k.
func (q UserQuota) Get(kind string) int64 {
	switch kind {
	case QuotaMaxTenants:
		return int64(q.MaxTenants)
	case QuotaStorageBytes:
		return q.StorageBytes
	case QuotaRequestsPerDay:
		return q.RequestsPerDay
	}
	return 0
}

// With returns q with quota kind k set to v.
func (q UserQuota) With(kind string, v int64) UserQuota {
	switch kind {
	case QuotaMaxTenants:
		q.MaxTenants = int(v)
	case QuotaStorageBytes:
		q.StorageBytes = v
	case QuotaRequestsPerDay:
		q.RequestsPerDay = v
	}
	return q
}

// Quota request states.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestRejected = "rejected"
)

// QuotaRequest is a customer's request for more of one quota.
type QuotaRequest struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	Kind      string     `json:"kind"`
	Value     int64      `json:"value"`
	Reason    string     `json:"reason"`
	State     string     `json:"state"`
	Decision  string     `json:"decision_reason,omitempty"`
	DecidedBy string     `json:"decided_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Session kinds.
const (
	// SessionLogin is a customer's own login (a refresh token).
	SessionLogin = "login"
	// SessionImpersonation is an operator acting as a customer.
	SessionImpersonation = "impersonation"
)

// Session is a login of a customer, or an operator's impersonation of one.
// Every access token names its session; revoking the session voids them.
type Session struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Kind   string `json:"kind"`
	// Operator is the operator token id behind an impersonation.
	Operator  string    `json:"operator,omitempty"`
	IP        string    `json:"ip,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AuditEntry records one security-relevant action.
type AuditEntry struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Actor is who acted: "user:{id}", "operator:{token id}", "node",
	// or "anonymous".
	Actor string `json:"actor"`
	// Impersonator is the operator behind an impersonated user's action.
	Impersonator string `json:"impersonator,omitempty"`
	// UserID is the customer the entry concerns (their own audit view).
	UserID string `json:"user_id,omitempty"`
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	IP     string `json:"ip,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// User e-mail and password limits. Passwords are hashed with argon2id, so
// their length is bounded only to keep hashing cheap to refuse.
const (
	MaxEmailLen       = 254
	MinUserPassword   = 10
	MaxUserPassword   = 128
	MaxReasonLen      = 1000
	DefaultMaxTenants = 3
)

// NormalizeEmail returns e lowercased and trimmed, or an error saying what
// to fix.
func NormalizeEmail(e string) (string, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" || len(e) > MaxEmailLen || !strings.Contains(e[strings.LastIndexByte(e, '@')+1:], ".") && !strings.HasSuffix(e, "@localhost") {
		return "", Errorf(ErrInvalidInput, "field \"email\" must be a plain e-mail address such as you@example.com")
	}
	return e, nil
}

// ValidatePassword says what is wrong with a new customer password.
func ValidatePassword(field, p string) error {
	if n := len(p); n < MinUserPassword || n > MaxUserPassword {
		return Errorf(ErrInvalidInput, "field %q must be %d to %d bytes long", field, MinUserPassword, MaxUserPassword)
	}
	return nil
}

// SSOPath is where a tenant's own host redeems a one-time SSO ticket into
// its admin UI.
const SSOPath = "/__pbe/sso"

// SSOGrant is what redeeming an SSO ticket tells the tenant node: which
// tenant it was for and who asked for it.
type SSOGrant struct {
	Tenant string `json:"tenant"`
	UserID string `json:"user_id,omitempty"`
	Actor  string `json:"actor"`
}

// Event is something that happened on the platform, as the control plane
// publishes it (GET /api/cp/events, webhooks). Its ID orders events: it
// is the Raft index of the change and a sequence number within it.
type Event struct {
	ID     string         `json:"id"`
	Time   time.Time      `json:"time"`
	Type   string         `json:"type"`
	Tenant string         `json:"tenant,omitempty"`
	Node   string         `json:"node,omitempty"`
	User   string         `json:"user,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
}

// Webhook is an operator-configured receiver of the platform's events.
// Each delivery is signed with its secret (HMAC-SHA256), which is shown
// only when the webhook is created.
type Webhook struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Types filters the events sent (all when empty; "tenant.*" for a
	// family).
	Types     []string  `json:"types,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Cursor is the id of the last event delivered (or skipped at
	// creation): delivery resumes after it, on whichever node leads.
	Cursor string `json:"cursor"`
}
