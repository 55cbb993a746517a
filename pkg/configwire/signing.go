package configwire

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Management signs what it tells gateway nodes, independently of who may publish on the bus
// (issue 12): every change and every snapshot stream carries an Ed25519 signature by one of
// management's signing keys, named by its key id, over a domain-separated message that binds the
// service id, the revision and the exact payload bytes. Nodes learn the public keys (VerifyKey)
// from the snapshot they fetch over the authenticated management API, and drop a change whose
// signature is missing or does not verify.
//
// The other way, nodes authenticate their heartbeats, live-connection replies and usage batches
// with a NodeKey: an HMAC key management derives for one gateway resource of one service and one
// of its gateway keys, and hands to its nodes with their snapshot. A node of another gateway
// cannot compute it, and regenerating the gateway key invalidates it.

// Signing errors. A change or node message that fails to verify wraps one of them.
var (
	// ErrUnsigned means the message carries no signature.
	ErrUnsigned = errors.New("configwire: unsigned message")
	// ErrForged means the signature is malformed, names a key the verifier does not know, or
	// does not verify.
	ErrForged = errors.New("configwire: signature does not verify")
)

// VerifyKey is a public key of management's configuration signing key. Key is 32 bytes (base64
// in JSON). Until, when set, is when the key stops verifying: management lists a retired key
// with the end of its retirement window, so that a node refuses what the key signs from then
// on even if it fetches no snapshot meanwhile; the active key has none.
type VerifyKey struct {
	ID    string    `json:"id"`
	Key   []byte    `json:"key"`
	Until time.Time `json:"until,omitzero"`
}

// KeyID is the id of the signing key whose public key is pub: "k" and 16 hex digits of its
// SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "k" + hex.EncodeToString(sum[:8])
}

// Signer signs changes and snapshots with one Ed25519 key. It is safe for concurrent use.
type Signer struct {
	id   string
	priv ed25519.PrivateKey
}

// NewSigner returns a Signer of priv, whose key id is KeyID of its public key.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	return &Signer{id: KeyID(priv.Public().(ed25519.PublicKey)), priv: priv}
}

// KeyID is the id of the Signer's key.
func (s *Signer) KeyID() string { return s.id }

// VerifyKey is the Signer's public key.
func (s *Signer) VerifyKey() VerifyKey {
	return VerifyKey{ID: s.id, Key: []byte(s.priv.Public().(ed25519.PublicKey))}
}

// SignChange returns the value of a change's bus.HeaderSignature: "<key id>.<base64url
// signature>" over the service id, the revision and payload, the message's exact bytes.
// Ed25519 signatures are deterministic, so signing the same change twice gives the same value.
func (s *Signer) SignChange(serviceID string, revision int64, payload []byte) string {
	return s.id + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, changeMessage(serviceID, revision, payload)))
}

// sign signs msg and returns the raw signature.
func (s *Signer) sign(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }

func changeMessage(serviceID string, revision int64, payload []byte) []byte {
	msg := make([]byte, 0, 64+len(serviceID)+len(payload))
	msg = append(msg, "gatehouse/change/v1\x00"...)
	msg = append(msg, serviceID...)
	msg = append(msg, 0)
	msg = strconv.AppendInt(msg, revision, 10)
	msg = append(msg, 0)
	return append(msg, payload...)
}

// snapshotMessage is what a snapshot's seal signs: its service, revision and the SHA-256 of
// the stream's bytes before the seal.
func snapshotMessage(serviceID string, revision int64, digest [sha256.Size]byte) []byte {
	msg := make([]byte, 0, 96+len(serviceID))
	msg = append(msg, "gatehouse/snapshot/v1\x00"...)
	msg = append(msg, serviceID...)
	msg = append(msg, 0)
	msg = strconv.AppendInt(msg, revision, 10)
	msg = append(msg, 0)
	return append(msg, digest[:]...)
}

// Verifier checks signatures against a set of VerifyKeys, each until its Until. The zero value
// knows no key and verifies nothing. It is immutable and safe for concurrent use.
type Verifier struct {
	keys map[string]verifyKey
}

// verifyKey is a key a Verifier knows: its public key and when it stops verifying (zero:
// never).
type verifyKey struct {
	pub   ed25519.PublicKey
	until time.Time
}

// NewVerifier returns a Verifier of keys; a key of the wrong length is an error.
func NewVerifier(keys []VerifyKey) (*Verifier, error) {
	v := &Verifier{keys: make(map[string]verifyKey, len(keys))}
	for _, k := range keys {
		if len(k.Key) != ed25519.PublicKeySize || k.ID == "" {
			return nil, fmt.Errorf("configwire: verify key %q is not an Ed25519 public key", k.ID)
		}
		v.keys[k.ID] = verifyKey{pub: ed25519.PublicKey(k.Key), until: k.Until}
	}
	return v, nil
}

// Len is how many keys v knows.
func (v *Verifier) Len() int {
	if v == nil {
		return 0
	}
	return len(v.keys)
}

// VerifyChange checks sig, a bus.HeaderSignature value, over a change of serviceID at revision
// with payload. It returns nil, or an error wrapping ErrUnsigned or ErrForged that quotes no
// key material.
func (v *Verifier) VerifyChange(serviceID string, revision int64, payload []byte, sig string) error {
	return v.verify(changeMessage(serviceID, revision, payload), sig)
}

// VerifyRequest checks sig, a bus.HeaderSignature value, over a request management sent on
// subject with reply subject reply and payload (SignRequest).
func (v *Verifier) VerifyRequest(subject, reply string, payload []byte, sig string) error {
	return v.verify(requestMessage(subject, reply, payload), sig)
}

// SignRequest returns the bus.HeaderSignature value of a request management sends on subject,
// with reply subject reply: a node answers only requests it verifies, and a request copied to
// another subject or reply inbox does not verify.
func (s *Signer) SignRequest(subject, reply string, payload []byte) string {
	return s.id + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, requestMessage(subject, reply, payload)))
}

func requestMessage(subject, reply string, payload []byte) []byte {
	msg := make([]byte, 0, 64+len(subject)+len(reply)+len(payload))
	msg = append(msg, "gatehouse/request/v1\x00"...)
	msg = append(msg, subject...)
	msg = append(msg, 0)
	msg = append(msg, reply...)
	msg = append(msg, 0)
	return append(msg, payload...)
}

func (v *Verifier) verify(msg []byte, sig string) error {
	if sig == "" {
		return ErrUnsigned
	}
	id, enc, ok := strings.Cut(sig, ".")
	if !ok {
		return fmt.Errorf("%w: malformed signature", ErrForged)
	}
	pub, known := v.key(id)
	if !known {
		return fmt.Errorf("%w: unknown or expired key id %.32q", ErrForged, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, raw) {
		return fmt.Errorf("%w: bad signature by key %s", ErrForged, id)
	}
	return nil
}

// key returns the public key named id, false when v does not know it or its Until passed.
func (v *Verifier) key(id string) (ed25519.PublicKey, bool) {
	if v == nil {
		return nil, false
	}
	k, ok := v.keys[id]
	if !ok || !k.until.IsZero() && !time.Now().Before(k.until) {
		return nil, false
	}
	return k.pub, true
}

// VerifySnapshot checks the seal of snap, a snapshot ReadSnapshot read: it returns nil when
// one of v's keys signed its service id, revision and bytes, and otherwise an error wrapping
// ErrUnsigned (no seal) or ErrForged.
func (v *Verifier) VerifySnapshot(snap Snapshot) error {
	if snap.Seal == nil {
		return ErrUnsigned
	}
	pub, known := v.key(snap.Seal.KeyID)
	if !known {
		return fmt.Errorf("%w: snapshot sealed by unknown or expired key %.32q", ErrForged, snap.Seal.KeyID)
	}
	if !ed25519.Verify(pub, snapshotMessage(snap.ServiceID, snap.Revision, snap.Seal.Digest), snap.Seal.Signature) {
		return fmt.Errorf("%w: bad snapshot seal by key %s", ErrForged, snap.Seal.KeyID)
	}
	return nil
}

// SignatureDigest is a short digest of a signature header value, for a JetStream
// de-duplication id: only the signer can produce it, so no one else can publish a message
// whose id shadows a real change (bus.ConfigMsgID).
func SignatureDigest(sig string) string {
	sum := sha256.Sum256([]byte(sig))
	return hex.EncodeToString(sum[:16])
}

// NodeKeyHeader is the HTTP response header of the snapshot call that hands a node its
// NodeKey (String form). It is a secret, sent only to a caller presenting the gateway's token.
const NodeKeyHeader = "Gatehouse-Node-Key"

// NodeKey is the key the nodes of one gateway resource authenticate their messages to
// management with (heartbeats, live-connection replies). ID names the management key it was
// derived from, so that management can derive it again from a message alone.
type NodeKey struct {
	ID  string
	Key []byte
}

// String is the NodeKey's form in bus.HeaderNodeKey: "<id>.<base64url key>". It is a secret.
func (k NodeKey) String() string { return k.ID + "." + base64.RawURLEncoding.EncodeToString(k.Key) }

// ParseNodeKey reads a NodeKey's String form.
func ParseNodeKey(s string) (NodeKey, error) {
	id, enc, ok := strings.Cut(s, ".")
	key, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || id == "" || err != nil || len(key) != sha256.Size {
		return NodeKey{}, errors.New("configwire: malformed node key")
	}
	return NodeKey{ID: id, Key: key}, nil
}

// DeriveNodeKey derives the NodeKey of gateway (compared case-insensitively, as ARM names) of
// the service serviceID from root, a secret only management holds, named id, bound to binding:
// a secret digest of the gateway key that signed the token the node presented. Regenerating
// that key changes the binding, so the node keys handed out before no longer verify (issue 12).
func DeriveNodeKey(id string, root []byte, serviceID, gateway string, binding []byte) NodeKey {
	m := hmac.New(sha256.New, root)
	m.Write([]byte("gatehouse/node-key/v2\x00"))
	m.Write([]byte(serviceID))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(gateway)))
	m.Write([]byte{0})
	m.Write(binding)
	return NodeKey{ID: id, Key: m.Sum(nil)}
}

// Sign returns the bus.HeaderNodeAuth value of a message a node sends on subject with data:
// "<key id>.<base64url HMAC-SHA256>". A reply's subject is the requester's unique inbox, so a
// reply replayed to another request does not verify.
func (k NodeKey) Sign(subject string, data []byte) string {
	return k.ID + "." + base64.RawURLEncoding.EncodeToString(nodeMAC(k.Key, subject, data))
}

// Verify checks auth, a bus.HeaderNodeAuth value, over a message on subject with data.
func (k NodeKey) Verify(subject string, data []byte, auth string) error {
	if auth == "" {
		return ErrUnsigned
	}
	id, enc, ok := strings.Cut(auth, ".")
	mac, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || id != k.ID || err != nil || !hmac.Equal(mac, nodeMAC(k.Key, subject, data)) {
		return ErrForged
	}
	return nil
}

// NodeAuthKeyID returns the key id of a bus.HeaderNodeAuth value, so that the receiver can
// derive the NodeKey to verify it with.
func NodeAuthKeyID(auth string) string {
	id, _, _ := strings.Cut(auth, ".")
	return id
}

func nodeMAC(key []byte, subject string, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gatehouse/node-message/v1\x00"))
	m.Write([]byte(subject))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}
