package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func newTestSigner(t testing.TB) (*Signer, SigningKey) {
	t.Helper()
	s := NewSigner()
	k := NewSigningKey()
	s.SetKeys([]SigningKey{k})
	return s, k
}

// forge signs claims with method and key, naming kid.
func forge(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	return s
}

func claimsAt(now time.Time, aud string, ttl time.Duration) Claims {
	return Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Subject: "u1", Audience: jwt.ClaimStrings{aud},
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
	}, SessionID: "s1"}
}

func TestSigner_RefusesForgedTokens(t *testing.T) {
	s, k := newTestSigner(t)
	good, _, err := s.Sign("u1", "s1", "", AccessTokenTTL)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.Verify(good); err != nil || c.Subject != "u1" || c.SessionID != "s1" {
		t.Fatalf("a good token was refused: %+v %v", c, err)
	}
	now := time.Now()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	parts := strings.Split(good, ".")
	tampered := func() string {
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		p := strings.Replace(string(payload), `"sub":"u1"`, `"sub":"u2"`, 1)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + parts[2]
	}()
	other := NewSigningKey()
	tests := []struct {
		name  string
		token string
	}{
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, k.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"RS256 signed by an attacker", forge(t, jwt.SigningMethodRS256, rsaKey, k.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"HS256 keyed with an RSA public key (confusion)", forge(t, jwt.SigningMethodHS256, pubPEM, k.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"HS512 with the right key", forge(t, jwt.SigningMethodHS512, k.Secret, k.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"wrong signing key", forge(t, jwt.SigningMethodHS256, other.Secret, k.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"unknown key id", forge(t, jwt.SigningMethodHS256, other.Secret, other.ID, claimsAt(now, AudienceAPI, time.Minute))},
		{"expired", forge(t, jwt.SigningMethodHS256, k.Secret, k.ID, claimsAt(now.Add(-time.Hour), AudienceAPI, time.Minute))},
		{"not yet valid", forge(t, jwt.SigningMethodHS256, k.Secret, k.ID, claimsAt(now.Add(time.Hour), AudienceAPI, time.Minute))},
		{"wrong audience", forge(t, jwt.SigningMethodHS256, k.Secret, k.ID, claimsAt(now, AudienceReset, time.Minute))},
		{"no expiry", forge(t, jwt.SigningMethodHS256, k.Secret, k.ID, Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: Issuer, Subject: "u1", Audience: jwt.ClaimStrings{AudienceAPI}}, SessionID: "s1"})},
		{"tampered payload", tampered},
		{"garbage", "not.a.jwt"},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := s.Verify(tc.token); err == nil {
				t.Fatalf("accepted: %+v", c)
			}
		})
	}
}

func TestSigner_LinkTokensArePurposeBound(t *testing.T) {
	s, _ := newTestSigner(t)
	verify, err := s.SignLink(AudienceVerify, "u1", "a@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.VerifyLink(AudienceReset, verify); err == nil {
		t.Fatal("a verification link was accepted as a reset link")
	}
	if _, err := s.Verify(verify); err == nil {
		t.Fatal("a verification link was accepted as an access token")
	}
	sub, stamp, err := s.VerifyLink(AudienceVerify, verify)
	if err != nil || sub != "u1" || stamp != "a@example.com" {
		t.Fatalf("VerifyLink: %q %q %v", sub, stamp, err)
	}
	access, _, _ := s.Sign("u1", "s1", "", time.Minute)
	if _, _, err := s.VerifyLink(AudienceReset, access); err == nil {
		t.Fatal("an access token was accepted as a reset link")
	}
}

func TestSigner_OldKeysStillVerify(t *testing.T) {
	s, k1 := newTestSigner(t)
	old, _, _ := s.Sign("u1", "s1", "", time.Minute)
	s.SetKeys([]SigningKey{k1, NewSigningKey()})
	if _, err := s.Verify(old); err != nil {
		t.Fatalf("a token of the older key was refused: %v", err)
	}
	empty := NewSigner()
	if _, _, err := empty.Sign("u1", "s1", "", time.Minute); err == nil {
		t.Fatal("a signer without keys signed")
	}
	if _, err := empty.Verify(old); err == nil {
		t.Fatal("a signer without keys verified")
	}
}

func TestPassword(t *testing.T) {
	h := HashPassword("correct horse battery")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash format: %s", h)
	}
	if h == HashPassword("correct horse battery") {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if !CheckPassword(h, "correct horse battery") {
		t.Fatal("the right password was refused")
	}
	for _, bad := range []string{"correct horse batterY", "", "correct horse battery "} {
		if CheckPassword(h, bad) {
			t.Fatalf("wrong password %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "$argon2id$", "$2a$10$abcdefghijklmnopqrstuv", h[:len(h)-4]} {
		if CheckPassword(bad, "correct horse battery") {
			t.Fatalf("malformed hash %q matched", bad)
		}
	}
}

func BenchmarkVerifyAccessToken(b *testing.B) {
	s, _ := newTestSigner(b)
	tok, _, _ := s.Sign("u1", "s1", "", time.Minute)
	for b.Loop() {
		if _, err := s.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		HashPassword("correct horse battery")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
