package store

import (
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

func domainKey(d string) []byte { return append(append([]byte{}, prefixDomain...), d...) }

// applySetDomains replaces a live tenant's custom domains. A domain held by
// another tenant (live or deleted, until purged) is ErrDomainTaken.
func applySetDomains(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[SetDomains](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	t, cerr, err := liveTenant(a.txn, p.ID)
	if cerr != nil || err != nil {
		return nil, cerr, err
	}
	domains, cerr := normalizeDomains(p.Domains)
	if cerr != nil {
		return nil, cerr, nil
	}
	for _, d := range domains {
		var owner string
		found, err := getJSON(a.txn, domainKey(d), &owner)
		if err != nil {
			return nil, nil, err
		}
		if found && owner != t.ID {
			return nil, cluster.Errorf(cluster.ErrDomainTaken, "domain %s already serves tenant %s", d, owner), nil
		}
	}
	if err := unindexDomains(a.txn, t); err != nil {
		return nil, nil, err
	}
	for _, d := range domains {
		if err := setJSON(a.txn, domainKey(d), t.ID); err != nil {
			return nil, nil, err
		}
	}
	t.Domains = domains
	t.UpdatedAt, t.Version = a.now, a.index
	a.event(cluster.Event{Type: EventTenantDomains, Tenant: t.ID, User: t.Owner, Data: map[string]any{"domains": t.Domains}})
	return t, nil, putTenant(a.txn, t)
}

// normalizeDomains checks, sorts and de-duplicates domains.
func normalizeDomains(in []string) ([]string, *cluster.Error) {
	if len(in) > cluster.MaxDomains {
		return nil, cluster.Errorf(cluster.ErrInvalidInput, "a tenant has at most %d custom domains", cluster.MaxDomains)
	}
	out := slices.Clone(in)
	for _, d := range out {
		if err := cluster.ValidateDomain(d); err != nil {
			e, _ := cluster.AsError(err)
			return nil, e
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// unindexDomains removes the domain index entries of t.
func unindexDomains(txn *badger.Txn, t cluster.Tenant) error {
	for _, d := range t.Domains {
		var owner string
		found, err := getJSON(txn, domainKey(d), &owner)
		if err != nil {
			return err
		}
		if found && owner == t.ID {
			if err := txn.Delete(domainKey(d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// TenantByDomain returns the tenant a custom domain serves, or
// cluster.ErrTenantNotFound.
func (s *Store) TenantByDomain(d string) (cluster.Tenant, error) {
	var t cluster.Tenant
	err := s.view(func(txn *badger.Txn) error {
		var owner string
		found, err := getJSON(txn, domainKey(d), &owner)
		if err != nil {
			return err
		}
		if found {
			found, err = getJSON(txn, tenantKey(owner), &t)
		}
		if err == nil && !found {
			err = cluster.Errorf(cluster.ErrTenantNotFound, "no tenant is served at %s", d)
		}
		return err
	})
	return t, err
}
