package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTenantID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"acme", nil},
		{"a1b", nil},
		{"my-tenant-2", nil},
		{strings.Repeat("a", 63), nil},
		{"ab", ErrInvalidTenantID},
		{strings.Repeat("a", 64), ErrInvalidTenantID},
		{"Acme", ErrInvalidTenantID},
		{"-acme", ErrInvalidTenantID},
		{"acme-", ErrInvalidTenantID},
		{"ac_me", ErrInvalidTenantID},
		{"ac.me", ErrInvalidTenantID},
		{"../x", ErrInvalidTenantID},
		{"%2e%2e", ErrInvalidTenantID},
		{"ac\x00me", ErrInvalidTenantID},
		{"acmé", ErrInvalidTenantID},
		{"xn--80ak6aa92e", ErrInvalidTenantID},
		{"www", ErrReservedTenantID},
		{"api", ErrReservedTenantID},
		{"admin", ErrReservedTenantID},
		{"app", ErrReservedTenantID},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := ValidateTenantID(tc.id)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.ContainsRune(err.Error(), 0) {
				t.Fatal("message echoes a NUL byte")
			}
		})
	}
}

func TestValidateTenantIDSyntax_AllowsReservedShapes(t *testing.T) {
	if err := ValidateTenantIDSyntax("www"); err != nil {
		t.Fatalf("got %v: syntax check must not apply the reserved list", err)
	}
	if err := ValidateTenantIDSyntax("../etc"); !errors.Is(err, ErrInvalidTenantID) {
		t.Fatalf("got %v, want ErrInvalidTenantID", err)
	}
}

func TestError_MatchesByCode(t *testing.T) {
	err := Errorf(ErrTenantExists, "tenant %s exists", "acme")
	if !errors.Is(err, ErrTenantExists) || errors.Is(err, ErrTenantNotFound) {
		t.Fatal("errors.Is must compare codes")
	}
	if HTTPStatus(err) != 409 || HTTPStatus(errors.New("boom")) != 500 {
		t.Fatal("status mapping")
	}
}

// TestHTTPStatus_EveryErrorHasAStatus guards the status table: a sentinel
// without an entry would reach clients as a 500.
func TestHTTPStatus_EveryErrorHasAStatus(t *testing.T) {
	for _, e := range []*Error{
		ErrInvalidInput, ErrInvalidTenantID, ErrReservedTenantID, ErrTenantExists, ErrTenantNotFound,
		ErrDomainTaken, ErrTenantNotDeleted, ErrStaleVersion, ErrNotFound, ErrTokenNotFound, ErrUnauthorized,
		ErrNotLeader, ErrUnavailable, ErrInsufficientStorage, ErrClusterMismatch, ErrShuttingDown,
		ErrNotOwner, ErrTenantMoving, ErrNoLease, ErrStorageUnavailable, ErrNoNode,
	} {
		if s := HTTPStatus(e); s == 500 {
			t.Errorf("%s maps to 500", e.Code)
		}
	}
}
