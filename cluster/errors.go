package cluster

import (
	"errors"
	"fmt"
)

// Error is an error the platform reports to its callers: a stable machine
// code and a message that says what to fix. Errors cross process boundaries
// (Raft responses, forwarded writes, HTTP bodies) by code, so two Errors
// with the same Code match under errors.Is whatever their messages.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Data holds details a client can act on (a quota's current and
	// maximum values); it is sent as the error body's "data".
	Data map[string]any `json:"data,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an error with the code of kind and a specific message.
func Errorf(kind *Error, format string, args ...any) *Error {
	return &Error{Code: kind.Code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error if it is one (or wraps one).
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Sentinel errors. Compare with errors.Is; the HTTP layer maps each code to
// a status in one table.
var (
	// ErrInvalidInput is returned when a request is malformed or a field
	// fails validation.
	ErrInvalidInput = &Error{Code: "invalid_input", Message: "invalid input"}
	// ErrInvalidTenantID is returned for an id that is not a tenant DNS label.
	ErrInvalidTenantID = &Error{Code: "invalid_tenant_id", Message: "invalid tenant id"}
	// ErrReservedTenantID is returned for an id the platform keeps for itself.
	ErrReservedTenantID = &Error{Code: "reserved_tenant_id", Message: "reserved tenant id"}
	// ErrTenantExists is returned when creating a tenant whose id is taken
	// (by a live tenant or one deleted within its grace period).
	ErrTenantExists = &Error{Code: "tenant_exists", Message: "tenant already exists"}
	// ErrDomainTaken is returned when a custom domain belongs to another
	// tenant.
	ErrDomainTaken = &Error{Code: "domain_taken", Message: "domain is taken"}
	// ErrTenantNotFound is returned for an unknown (or purged) tenant.
	ErrTenantNotFound = &Error{Code: "tenant_not_found", Message: "tenant not found"}
	// ErrTenantNotDeleted is returned when restoring a tenant that is live.
	ErrTenantNotDeleted = &Error{Code: "tenant_not_deleted", Message: "tenant is not deleted"}
	// ErrStaleVersion is returned when a write names a version of a record
	// that is no longer current (optimistic concurrency).
	ErrStaleVersion = &Error{Code: "stale_version", Message: "stale version"}
	// ErrNotFound is returned for an unknown record of another kind
	// (a control-plane member, a node).
	ErrNotFound = &Error{Code: "not_found", Message: "not found"}
	// ErrTokenNotFound is returned for an unknown operator token id.
	ErrTokenNotFound = &Error{Code: "token_not_found", Message: "token not found"}
	// ErrUnauthorized is returned when a request carries no valid credentials.
	ErrUnauthorized = &Error{Code: "unauthorized", Message: "missing or invalid credentials"}
	// ErrNotLeader is returned by a control-plane node that cannot accept a
	// write because it is not the Raft leader and knows of none.
	ErrNotLeader = &Error{Code: "not_leader", Message: "no control-plane leader; retry shortly"}
	// ErrUnavailable is returned when a dependency (object store, tenant
	// node) cannot serve the request right now.
	ErrUnavailable = &Error{Code: "unavailable", Message: "temporarily unavailable; retry shortly"}
	// ErrInsufficientStorage is returned for writes while a node's data
	// volume is below its free-space minimum.
	ErrInsufficientStorage = &Error{Code: "insufficient_storage", Message: "insufficient storage"}
	// ErrClusterMismatch is returned when a node of another cluster asks to
	// join.
	ErrClusterMismatch = &Error{Code: "cluster_mismatch", Message: "node belongs to another cluster"}
	// ErrShuttingDown is returned for work arriving while a component stops.
	ErrShuttingDown = &Error{Code: "shutting_down", Message: "shutting down"}
)

// Errors of customer accounts and quotas.
var (
	// ErrForbidden is returned when the caller is known but may not do
	// what it asks (an unverified customer creating a tenant, a customer
	// on an operator endpoint).
	ErrForbidden = &Error{Code: "forbidden", Message: "forbidden"}
	// ErrQuotaExceeded is returned when a customer is at a quota.
	ErrQuotaExceeded = &Error{Code: "quota_exceeded", Message: "quota exceeded"}
	// ErrTenantSuspended is returned for requests to a suspended tenant.
	ErrTenantSuspended = &Error{Code: "tenant_suspended", Message: "tenant is suspended"}
	// ErrUserExists is returned when an e-mail address is taken.
	ErrUserExists = &Error{Code: "user_exists", Message: "user exists"}
	// ErrRateLimited is returned when a caller tries too often.
	ErrRateLimited = &Error{Code: "rate_limited", Message: "too many attempts; retry later"}
	// ErrStorageQuota is returned for a tenant write over its storage quota.
	ErrStorageQuota = &Error{Code: "storage_quota_exceeded", Message: "storage quota exceeded"}
	// ErrRequestQuota is returned for a tenant request over its daily
	// request quota.
	ErrRequestQuota = &Error{Code: "request_quota_exceeded", Message: "daily request quota exceeded"}
)

// Errors of the tenant-node fleet.
var (
	// ErrNotOwner is returned by a node asked to serve a tenant it does not
	// own (at that epoch): the caller's route is stale.
	ErrNotOwner = &Error{Code: "not_owner", Message: "this node does not serve the tenant; re-resolve its route"}
	// ErrTenantMoving is returned while a tenant is being released by its
	// node for a move: retry shortly.
	ErrTenantMoving = &Error{Code: "tenant_moving", Message: "tenant is moving; retry shortly"}
	// ErrNoLease is returned by a node whose lease has lapsed: it serves
	// nothing until the control plane renews it.
	ErrNoLease = &Error{Code: "no_lease", Message: "node has no lease; retry shortly"}
	// ErrStorageUnavailable is returned when a tenant cannot be opened
	// because the object store cannot be read: it is not opened empty.
	ErrStorageUnavailable = &Error{Code: "storage_unavailable", Message: "the object store is unavailable; retry later"}
	// ErrNoNode is returned when no tenant node can take a tenant.
	ErrNoNode = &Error{Code: "no_node", Message: "no tenant node is available; retry shortly"}
)
