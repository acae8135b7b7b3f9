package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Link-token audiences: each e-mailed link is good for one purpose only.
const (
	AudienceVerify = "pbe-verify"
	AudienceReset  = "pbe-reset"
)

// linkClaims bind a link to a user and, through Stamp, to the state it was
// issued for (the e-mail being verified; the time the password was last
// set), so a reset link stops working once the password changes.
type linkClaims struct {
	jwt.RegisteredClaims
	Stamp string `json:"stp"`
}

// SignLink returns a token for an e-mailed link of purpose aud.
func (s *Signer) SignLink(aud, userID, stamp string, ttl time.Duration) (string, error) {
	ring := s.ring.Load()
	if ring == nil || len(*ring) == 0 {
		return "", ErrNoSigningKey
	}
	key := (*ring)[len(*ring)-1]
	now := s.now().UTC().Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, linkClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: Issuer, Subject: userID, Audience: jwt.ClaimStrings{aud},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now),
		},
		Stamp: stamp,
	})
	t.Header["kid"] = key.ID
	return t.SignedString(key.Secret)
}

// VerifyLink checks a link token of purpose aud and returns its user and
// stamp.
func (s *Signer) VerifyLink(aud, token string) (userID, stamp string, err error) {
	var c linkClaims
	_, err = jwt.ParseWithClaims(token, &c, s.key,
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return "", "", fmt.Errorf("invalid link: %w", err)
	}
	if c.Subject == "" {
		return "", "", errors.New("invalid link: no subject")
	}
	return c.Subject, c.Stamp, nil
}
