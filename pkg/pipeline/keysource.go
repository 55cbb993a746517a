package pipeline

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// APIM's documented key refresh behaviour (reference/apim.md §3.2).
const (
	// jwksTTL is how long fetched keys are used before they are fetched again.
	jwksTTL = time.Hour
	// refetchInterval is the least time between two fetches of the same URL, whether the
	// reason is a token with an unknown kid or an earlier failure.
	refetchInterval = 5 * time.Minute
	// fetchTimeout bounds one fetch of metadata and keys.
	fetchTimeout = 10 * time.Second
	// maxKeyDocument bounds the size of metadata and JWKS documents.
	maxKeyDocument = 1 << 20
)

// KeySource fetches and caches the signing keys of validate-jwt's openid-config URLs: the
// OpenID Connect metadata document gives jwks_uri, whose JWKS holds the keys (a URL that
// serves a JWKS directly is accepted too). Keys are cached for an hour; a token whose kid is
// unknown, or a failed fetch, triggers a new fetch at most once per 5 minutes. The last keys
// fetched stay in use while fetches fail. A KeySource is shared by successive compiled
// configurations so that swaps keep the cache; it is safe for concurrent use.
type KeySource struct {
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*keyEntry
}

// keyEntry is the cache of one openid-config URL.
type keyEntry struct {
	// sem is held by the goroutine fetching; others wait for it or their context.
	sem chan struct{}

	mu        sync.Mutex
	keys      []jwk
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch, successful or not
}

// jwk is one verification key: []byte (HMAC), *rsa.PublicKey, *ecdsa.PublicKey or
// ed25519.PublicKey. alg, when set, restricts the token algorithms it verifies.
type jwk struct {
	kid string
	alg string
	key any
}

// NewKeySource returns a KeySource that fetches with client (nil: a client with a 10-second
// timeout) and logs fetch failures to log (nil: discarded).
func NewKeySource(client *http.Client, log *slog.Logger) *KeySource {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KeySource{client: client, log: log, now: time.Now, entries: make(map[string]*keyEntry)}
}

func (k *KeySource) entry(url string) *keyEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.entries[url]
	if !ok {
		e = &keyEntry{sem: make(chan struct{}, 1)}
		k.entries[url] = e
	}
	return e
}

// keys returns the keys of url, fetching them when none are cached or they are older than an
// hour (subject to the 5-minute refetch interval). unknownKid asks for a refetch because a
// token named a key that is not cached. It returns the cached keys when a fetch is not
// allowed yet or fails.
func (k *KeySource) keys(ctx context.Context, url string, unknownKid bool) []jwk {
	e := k.entry(url)
	e.mu.Lock()
	keys, fetched, attempted := e.keys, e.fetched, e.attempted
	e.mu.Unlock()
	now := k.now()
	stale := fetched.IsZero() || now.Sub(fetched) >= jwksTTL
	if !(stale || unknownKid) || !attempted.IsZero() && now.Sub(attempted) < refetchInterval {
		return keys
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return keys
	}
	defer func() { <-e.sem }()
	e.mu.Lock()
	if !e.attempted.Equal(attempted) {
		// Another request fetched while this one waited.
		keys = e.keys
		e.mu.Unlock()
		return keys
	}
	e.mu.Unlock()

	fetchedKeys, err := k.fetch(ctx, url)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.attempted = k.now()
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelWarn, "fetching signing keys failed", slog.String("url", url), slog.String("error", err.Error()))
		return e.keys
	}
	e.keys, e.fetched = fetchedKeys, e.attempted
	return e.keys
}

// fetch reads the metadata document at url and the JWKS it names.
func (k *KeySource) fetch(ctx context.Context, url string) ([]jwk, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var doc struct {
		JWKSURI string            `json:"jwks_uri"`
		Keys    []json.RawMessage `json:"keys"`
	}
	if err := k.getJSON(ctx, url, &doc); err != nil {
		return nil, err
	}
	if doc.Keys == nil {
		if doc.JWKSURI == "" {
			return nil, errors.New("the document has neither jwks_uri nor keys")
		}
		if err := k.getJSON(ctx, doc.JWKSURI, &doc); err != nil {
			return nil, err
		}
	}
	keys := make([]jwk, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		key, err := parseJWK(raw)
		if err != nil {
			k.log.LogAttrs(ctx, slog.LevelWarn, "skipping unusable JWK", slog.String("url", url), slog.String("error", err.Error()))
			continue
		}
		if key.key != nil {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

func (k *KeySource) getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDocument+1))
	if err != nil {
		return err
	}
	if len(body) > maxKeyDocument {
		return fmt.Errorf("GET %s: the document is larger than %d bytes", url, maxKeyDocument)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// parseJWK parses one JSON Web Key (RFC 7517/7518/8037). Encryption keys and unknown key
// types give a zero jwk and no error.
func parseJWK(raw []byte) (jwk, error) {
	var r struct {
		Kty, Kid, Use, Alg, N, E, Crv, X, Y, K string
		X5c                                    []string `json:"x5c"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return jwk{}, err
	}
	if r.Use == "enc" {
		return jwk{}, nil
	}
	out := jwk{kid: r.Kid, alg: r.Alg}
	var err error
	switch r.Kty {
	case "RSA":
		if r.N == "" && len(r.X5c) > 0 {
			out.key, err = certKey(r.X5c[0])
			break
		}
		out.key, err = rsaKey(r.N, r.E)
	case "EC":
		out.key, err = ecKey(r.Crv, r.X, r.Y)
	case "OKP":
		if r.Crv != "Ed25519" {
			return jwk{}, nil
		}
		var x []byte
		if x, err = decodeB64URL(r.X); err == nil && len(x) != ed25519.PublicKeySize {
			err = errors.New("bad Ed25519 key size")
		}
		out.key = ed25519.PublicKey(x)
	case "oct":
		var k []byte
		if k, err = decodeB64URL(r.K); err == nil && len(k) == 0 {
			err = errors.New("empty symmetric key")
		}
		out.key = k
	default:
		return jwk{}, nil
	}
	if err != nil {
		return jwk{}, fmt.Errorf("key %q: %w", r.Kid, err)
	}
	return out, nil
}

// decodeB64URL decodes base64url with or without padding (and, leniently, standard base64).
func decodeB64URL(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("invalid base64url")
}

// rsaKey builds an RSA public key from a base64url modulus and exponent.
func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err := decodeB64URL(n)
	if err != nil {
		return nil, fmt.Errorf("modulus: %w", err)
	}
	eb, err := decodeB64URL(e)
	if err != nil {
		return nil, fmt.Errorf("exponent: %w", err)
	}
	if len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("exponent out of range")
	}
	exp := 0
	for _, b := range eb {
		exp = exp<<8 | int(b)
	}
	mod := new(big.Int).SetBytes(nb)
	if mod.BitLen() < 1024 {
		return nil, errors.New("RSA keys shorter than 1024 bits are refused")
	}
	if exp < 3 || exp%2 == 0 {
		return nil, errors.New("invalid exponent")
	}
	return &rsa.PublicKey{N: mod, E: exp}, nil
}

func ecKey(crv, x, y string) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("unsupported curve %q", crv)
	}
	xb, err := decodeB64URL(x)
	if err != nil {
		return nil, err
	}
	yb, err := decodeB64URL(y)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(xb) > size || len(yb) > size {
		return nil, errors.New("bad coordinate size")
	}
	point := make([]byte, 1+2*size)
	point[0] = 4
	copy(point[1+size-len(xb):1+size], xb)
	copy(point[1+2*size-len(yb):], yb)
	return ecdsa.ParseUncompressedPublicKey(curve, point)
}

func certKey(b64 string) (any, error) {
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return cert.PublicKey, nil
}
