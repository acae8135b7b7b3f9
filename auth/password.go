package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Customer passwords are hashed with argon2id (RFC 9106) at OWASP's
// recommended minimum: 19 MiB, 2 passes, 1 lane. At most GOMAXPROCS
// hashes run at once, so a burst of logins costs bounded memory.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// HashPassword returns the PHC string of password with a fresh salt.
func HashPassword(password string) string {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	sum := argonHash([]byte(password), salt, argonTime, argonMemory, argonThreads)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

func argonHash(pw, salt []byte, t, m uint32, p uint8) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey(pw, salt, t, m, p, argonKeyLen)
}

// CheckPassword reports, in constant time for a given hash, whether
// password matches hash. A malformed hash matches nothing.
func CheckPassword(hash, password string) bool {
	salt, sum, t, m, p, err := parseHash(hash)
	if err != nil {
		return false
	}
	got := argonHash([]byte(password), salt, t, m, p)
	return subtle.ConstantTimeCompare(got, sum) == 1
}

// dummyHash is checked against when there is no account, so that a login
// for an unknown e-mail costs what a wrong password costs.
var dummyHash = HashPassword("pbe-no-such-account")

// CheckNoPassword spends the time of one CheckPassword and returns false.
func CheckNoPassword(password string) bool {
	CheckPassword(dummyHash, password)
	return false
}

func parseHash(h string) (salt, sum []byte, t, m uint32, p uint8, err error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, nil, 0, 0, 0, errors.New("not an argon2id hash")
	}
	var v int
	if _, err = fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return nil, nil, 0, 0, 0, errors.New("unsupported argon2 version")
	}
	if _, err = fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || t == 0 || m == 0 || p == 0 || m > 1<<20 || t > 16 {
		return nil, nil, 0, 0, 0, errors.New("bad argon2 parameters")
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return nil, nil, 0, 0, 0, err
	}
	if sum, err = b64.DecodeString(parts[5]); err != nil || len(sum) == 0 {
		return nil, nil, 0, 0, 0, errors.New("bad argon2 hash")
	}
	return salt, sum, t, m, p, nil
}
