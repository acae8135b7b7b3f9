package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
)

// Token is an operator (cluster admin) API token as the control plane stores
// it: only the SHA-256 of the secret is kept, so a token is shown once, when
// it is created, and never again.
type Token struct {
	// ID is a short public handle for listing and revoking.
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// TokenPrefix starts every operator token, so a leaked one is recognisable.
const TokenPrefix = "pbe_"

// NewTokenSecret returns a fresh random operator token.
func NewTokenSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// HashToken returns the stored form of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenID returns the public id of a token from its hash.
func TokenID(hash string) string {
	if len(hash) < 12 {
		return hash
	}
	return hash[:12]
}
