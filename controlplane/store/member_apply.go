package store

import (
	"net"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

// Member field limits, in bytes.
const (
	MaxMemberIDLen   = 128
	MaxMemberAddrLen = 256
)

func memberKey(id string) []byte { return append(append([]byte{}, prefixMember...), id...) }

// applySetMember records a control-plane member's addresses.
func applySetMember(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[SetMember](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	m := p.Member
	if cerr := checkMember(m); cerr != nil {
		return nil, cerr, nil
	}
	if err := setJSON(a.txn, memberKey(m.ID), m); err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

// applyRemoveMember forgets a control-plane member.
func applyRemoveMember(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RemoveMember](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var m cluster.Member
	found, err := getJSON(a.txn, memberKey(p.ID), &m)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, cluster.Errorf(cluster.ErrNotFound, "control-plane member %q not found", p.ID), nil
	}
	if err := a.txn.Delete(memberKey(p.ID)); err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

func checkMember(m cluster.Member) *cluster.Error {
	switch {
	case m.ID == "" || len(m.ID) > MaxMemberIDLen:
		return cluster.Errorf(cluster.ErrInvalidInput, "member id must be 1 to %d bytes", MaxMemberIDLen)
	case !validHostPort(m.RaftAddr):
		return cluster.Errorf(cluster.ErrInvalidInput, "member raft address %q must be host:port", m.RaftAddr)
	case m.APIAddr != "" && !validHostPort(m.APIAddr):
		return cluster.Errorf(cluster.ErrInvalidInput, "member API address %q must be host:port", m.APIAddr)
	}
	return nil
}

func validHostPort(s string) bool {
	if s == "" || len(s) > MaxMemberAddrLen {
		return false
	}
	_, _, err := net.SplitHostPort(s)
	return err == nil
}

// Member returns the control-plane member id, or cluster.ErrNotFound.
func (s *Store) Member(id string) (cluster.Member, error) {
	var m cluster.Member
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, memberKey(id), &m)
		if err == nil && !found {
			err = cluster.Errorf(cluster.ErrNotFound, "control-plane member %q not found", id)
		}
		return err
	})
	return m, err
}

// Members returns every recorded control-plane member, sorted by id.
func (s *Store) Members() ([]cluster.Member, error) {
	out := []cluster.Member{}
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(txn, prefixMember, func(m *cluster.Member) { out = append(out, *m) })
	})
	return out, err
}
