package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Access tokens are HS256 JWTs signed with a key from the cluster's key
// ring (cluster state, replicated by Raft, so every control-plane node
// verifies what any other signed). The parser accepts only HS256, only
// with a known key id, only this issuer and audience, and only with an
// expiry: "alg: none", algorithm confusion, a foreign key, an expired or
// not-yet-valid token all fail in Verify.
const (
	// Issuer is the iss of every platform token.
	Issuer = "pbe"
	// AudienceAPI is the aud of access tokens for the platform API.
	AudienceAPI = "pbe-api"
	// AccessTokenTTL is how long an access token is valid.
	AccessTokenTTL = 15 * time.Minute
	// clockSkew is the leeway for exp and nbf between nodes' clocks.
	clockSkew = 5 * time.Second
)

// SigningKey is one HMAC key of the ring.
type SigningKey struct {
	ID     string `json:"id"`
	Secret []byte `json:"secret"`
}

// NewSigningKey returns a fresh random 256-bit key.
func NewSigningKey() SigningKey {
	id := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	if _, err := rand.Read(secret); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return SigningKey{ID: hex.EncodeToString(id), Secret: secret}
}

// Claims are an access token's claims: the customer (sub), the session it
// belongs to (sid) and, for an operator acting as the customer, the
// operator's token id (imp).
type Claims struct {
	jwt.RegisteredClaims
	SessionID    string `json:"sid"`
	Impersonator string `json:"imp,omitempty"`
}

// Signer issues and verifies access tokens with the cluster's keys. The
// newest key signs; every key in the ring verifies.
type Signer struct {
	ring atomic.Pointer[[]SigningKey]
	now  func() time.Time
}

// NewSigner returns a signer with no keys: Sign fails and Verify refuses
// everything until SetKeys.
func NewSigner() *Signer {
	return &Signer{now: time.Now}
}

// SetKeys replaces the key ring; the last key signs.
func (s *Signer) SetKeys(keys []SigningKey) {
	k := append([]SigningKey(nil), keys...)
	s.ring.Store(&k)
}

// HasKeys reports whether the signer can sign.
func (s *Signer) HasKeys() bool {
	k := s.ring.Load()
	return k != nil && len(*k) > 0
}

// ErrNoSigningKey is returned by Sign before the cluster has a key.
var ErrNoSigningKey = errors.New("no signing key yet")

// Sign returns an access token for userID in session sessionID, valid for
// ttl from now.
func (s *Signer) Sign(userID, sessionID, impersonator string, ttl time.Duration) (string, time.Time, error) {
	ring := s.ring.Load()
	if ring == nil || len(*ring) == 0 {
		return "", time.Time{}, ErrNoSigningKey
	}
	key := (*ring)[len(*ring)-1]
	now := s.now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{AudienceAPI},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		SessionID:    sessionID,
		Impersonator: impersonator,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = key.ID
	signed, err := t.SignedString(key.Secret)
	return signed, exp, err
}

// Verify checks an access token and returns its claims. Any failure is
// one error: the caller answers 401 without saying which check failed.
func (s *Signer) Verify(token string) (Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, s.key,
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(AudienceAPI),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("invalid access token: %w", err)
	}
	if c.Subject == "" || c.SessionID == "" {
		return Claims{}, errors.New("invalid access token: no subject or session")
	}
	return c, nil
}

// key finds the verification key named by the token's kid.
func (s *Signer) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	ring := s.ring.Load()
	if ring == nil {
		return nil, ErrNoSigningKey
	}
	for _, k := range *ring {
		if k.ID == kid {
			return k.Secret, nil
		}
	}
	return nil, errors.New("unknown key id")
}
