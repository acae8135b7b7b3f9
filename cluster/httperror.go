package cluster

import (
	"encoding/json"
	"errors"
	"net/http"
)

// statusByCode maps error codes to HTTP statuses.
var statusByCode = map[string]int{
	ErrInvalidInput.Code:       http.StatusBadRequest,
	ErrInvalidTenantID.Code:    http.StatusBadRequest,
	ErrReservedTenantID.Code:   http.StatusBadRequest,
	ErrTenantExists.Code:       http.StatusConflict,
	ErrTenantNotFound.Code:     http.StatusNotFound,
	ErrDomainTaken.Code:        http.StatusConflict,
	ErrTenantNotDeleted.Code:   http.StatusConflict,
	ErrStaleVersion.Code:       http.StatusConflict,
	ErrTokenNotFound.Code:      http.StatusNotFound,
	ErrUnauthorized.Code:       http.StatusUnauthorized,
	ErrNotLeader.Code:          http.StatusServiceUnavailable,
	ErrUnavailable.Code:        http.StatusServiceUnavailable,
	ErrShuttingDown.Code:       http.StatusServiceUnavailable,
	"not_found":                http.StatusNotFound,
	ErrForbidden.Code:          http.StatusForbidden,
	ErrQuotaExceeded.Code:      http.StatusForbidden,
	ErrTenantSuspended.Code:    http.StatusForbidden,
	ErrUserExists.Code:         http.StatusConflict,
	ErrRateLimited.Code:        http.StatusTooManyRequests,
	ErrStorageQuota.Code:       http.StatusInsufficientStorage,
	ErrRequestQuota.Code:       http.StatusTooManyRequests,
	"method_not_allowed":       http.StatusMethodNotAllowed,
	"body_too_large":           http.StatusRequestEntityTooLarge,
	"unsupported_media_type":   http.StatusUnsupportedMediaType,
	"insufficient_storage":     http.StatusInsufficientStorage,
	ErrClusterMismatch.Code:    http.StatusConflict,
	ErrNotOwner.Code:           http.StatusServiceUnavailable,
	ErrTenantMoving.Code:       http.StatusServiceUnavailable,
	ErrNoLease.Code:            http.StatusServiceUnavailable,
	ErrNoNode.Code:             http.StatusServiceUnavailable,
	ErrStorageUnavailable.Code: http.StatusServiceUnavailable,
}

// RetryAfterSeconds is sent with every 503 the platform produces.
const RetryAfterSeconds = "1"

// HTTPStatus returns the status for err: its code's status for an *Error,
// 500 for anything else.
func HTTPStatus(err error) int {
	if e, ok := AsError(err); ok {
		if s, ok := statusByCode[e.Code]; ok {
			return s
		}
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error the platform returns.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// WriteError writes err as a JSON error response. Errors that are not
// *Error are internal: the client gets a generic message, never the cause.
func WriteError(w http.ResponseWriter, err error) {
	status := HTTPStatus(err)
	body := ErrorBody{Code: "internal", Message: "internal error"}
	if e, ok := AsError(err); ok {
		body = ErrorBody{Code: e.Code, Message: e.Message}
		if len(e.Data) > 0 {
			body.Data = e.Data
		}
	} else if errors.Is(err, http.ErrAbortHandler) {
		panic(err)
	}
	WriteJSONError(w, status, body)
}

// WriteJSONError writes body with status.
func WriteJSONError(w http.ResponseWriter, status int, body ErrorBody) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		h.Set("Retry-After", RetryAfterSeconds)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
