package store

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/pbe/pbe/cluster"
)

// Operator token limits, in bytes.
const (
	MaxTokenIDLen   = 64
	MaxTokenHashLen = 128
)

// applyCreateToken stores an operator token, its hash included, and indexes
// it by hash. The returned token, like every result, has been through JSON,
// so its Hash is empty: the caller knows the hash it proposed.
func applyCreateToken(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[CreateToken](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	tok := newStoredToken(p.Token)
	if cerr := checkNewToken(tok); cerr != nil {
		return nil, cerr, nil
	}
	var ignored storedToken
	if found, err := getJSON(a.txn, tokenKey(tok.ID), &ignored); err != nil || found {
		return nil, tokenIDTaken(found, tok.ID), err
	}
	var ownerID string
	if found, err := getJSON(a.txn, tokenHashKey(tok.Hash), &ownerID); err != nil || found {
		return nil, tokenHashTaken(found), err
	}
	tok.CreatedAt = a.now
	if err := setJSON(a.txn, tokenKey(tok.ID), tok); err != nil {
		return nil, nil, err
	}
	if err := setJSON(a.txn, tokenHashKey(tok.Hash), tok.ID); err != nil {
		return nil, nil, err
	}
	return tok.token(), nil, nil
}

// applyRevokeToken deletes an operator token and its hash index entry.
func applyRevokeToken(a *applyCtx) (any, *cluster.Error, error) {
	p, err := decodePayload[RevokeToken](a.cmd)
	if err != nil {
		return nil, nil, err
	}
	var tok storedToken
	found, err := getJSON(a.txn, tokenKey(p.ID), &tok)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, cluster.Errorf(cluster.ErrTokenNotFound, "token %q not found", p.ID), nil
	}
	if err := a.txn.Delete(tokenKey(tok.ID)); err != nil {
		return nil, nil, err
	}
	if err := deleteHashIndex(a.txn, tok); err != nil {
		return nil, nil, err
	}
	return tok.token(), nil, nil
}

// deleteHashIndex removes the hash index entry of tok if it points at tok.
func deleteHashIndex(txn *badger.Txn, tok storedToken) error {
	var ownerID string
	found, err := getJSON(txn, tokenHashKey(tok.Hash), &ownerID)
	if err != nil || !found || ownerID != tok.ID {
		return err
	}
	return txn.Delete(tokenHashKey(tok.Hash))
}

func checkNewToken(t storedToken) *cluster.Error {
	switch {
	case t.ID == "" || len(t.ID) > MaxTokenIDLen:
		return cluster.Errorf(cluster.ErrInvalidInput, "token id must be 1 to %d bytes, got %d", MaxTokenIDLen, len(t.ID))
	case t.Hash == "" || len(t.Hash) > MaxTokenHashLen:
		return cluster.Errorf(cluster.ErrInvalidInput, "token hash must be 1 to %d bytes, got %d", MaxTokenHashLen, len(t.Hash))
	case len(t.Name) > MaxNameLen:
		return cluster.Errorf(cluster.ErrInvalidInput, "token name is %d bytes, at most %d allowed", len(t.Name), MaxNameLen)
	}
	return nil
}

// tokenIDTaken is the error for a token id in use, or nil if it is free.
func tokenIDTaken(found bool, id string) *cluster.Error {
	if !found {
		return nil
	}
	return cluster.Errorf(cluster.ErrInvalidInput, "token id %q already exists", id)
}

// tokenHashTaken is the error for a token hash in use, or nil if it is free.
// The message does not echo the hash.
func tokenHashTaken(found bool) *cluster.Error {
	if !found {
		return nil
	}
	return cluster.Errorf(cluster.ErrInvalidInput, "a token with the same secret already exists")
}
