// Package secretbox seals secrets at rest (subscription keys, gateway keys, secret named values)
// with AES-256-GCM under a key derived from MANAGEMENT_ENCRYPTION_KEY. A sealed value carries the
// id of the key that sealed it, so a deployment can rotate keys and still open old values.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// DevKey is the key used when none is configured; management warns loudly when it is in use.
const DevKey = "gatehouse-development-key-do-not-use-in-production"

// ErrOpen means a sealed value could not be opened: wrong key, or tampered data.
var ErrOpen = errors.New("secretbox: cannot open sealed value")

const version = 1

// Box seals and opens values. It is safe for concurrent use.
type Box struct {
	aead  cipher.AEAD
	keyID [4]byte
}

// New derives a 256-bit key from secret (any non-empty string; use 32+ random bytes in production).
func New(secret string) (*Box, error) {
	if secret == "" {
		return nil, errors.New("secretbox: empty key")
	}
	key := sha256.Sum256([]byte("gatehouse/secretbox/v1\x00" + secret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	id := sha256.Sum256(key[:])
	b := &Box{aead: aead}
	copy(b.keyID[:], id[:4])
	return b, nil
}

// Seal encrypts plaintext; aad binds the value to its owner (e.g. the resource id), so a sealed
// value copied onto another row does not open.
func (b *Box) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, 0, 1+4+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out = append(out, version)
	out = append(out, b.keyID[:]...)
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("secretbox: crypto/rand failed: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	out = append(out, nonce...)
	return b.aead.Seal(out, nonce, plaintext, aad)
}

// Open decrypts a value produced by Seal with the same key and aad.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(sealed) < 1+4+ns+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	if [4]byte(sealed[1:5]) != b.keyID {
		return nil, fmt.Errorf("%w: sealed with another key", ErrOpen)
	}
	nonce := sealed[5 : 5+ns]
	plain, err := b.aead.Open(nil, nonce, sealed[5+ns:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
