package pipeline

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
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
	keys, skipped := parseJWKs(doc.Keys)
	for _, err := range skipped {
		k.log.LogAttrs(ctx, slog.LevelWarn, "skipping unusable JWK", slog.String("url", url), slog.String("error", err.Error()))
	}
	return keys, nil
}

// getJSON fetches url into into. It is ours rather than jwkset's HTTP storage
// (jwkset.NewStorageFromHTTP) because that storage reads a JWKS only, not the OpenID metadata
// that names it; reads bodies without a size bound; refreshes on a goroutine of its own per URL
// instead of on demand at the rates above; and drops the whole set when one key is invalid.
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

// parseJWKs turns the "keys" of a JWK Set into verification keys. A key that does not parse
// or cannot be used is skipped and its error returned in skipped, so that one bad key does
// not cost the others; encryption keys and key types validate-jwt has no algorithm for are
// dropped without an error.
func parseJWKs(raws []json.RawMessage) (keys []jwk, skipped []error) {
	keys = make([]jwk, 0, len(raws))
	for _, raw := range raws {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(raw, &m); err != nil {
			skipped = append(skipped, err)
			continue
		}
		key, err := keyFromJWK(m)
		switch {
		case err != nil:
			skipped = append(skipped, err)
		case key.key != nil:
			keys = append(keys, key)
		}
	}
	return keys, skipped
}

// jwkValidation is how jwkset checks a JWK. RFC 7517 §4.2 and §4.3 allow values of use and
// key_ops beyond IANA's, and validate-jwt never fetches an x5u, so none of the three refuses
// a key. Only the public part of an asymmetric JWK is read.
var jwkValidation = jwkset.JWKValidateOptions{SkipUse: true, SkipKeyOps: true, SkipX5UScheme: true}

// keyFromJWK parses and validates one JSON Web Key (RFC 7517/7518/8037) with jwkset, then
// applies validate-jwt's own limits on top. An encryption key or a key validate-jwt has no
// algorithm for (an unknown kty, Ed448, X25519) gives a zero jwk and no error.
func keyFromJWK(m jwkset.JWKMarshal) (jwk, error) {
	if m.USE == jwkset.UseEnc {
		return jwk{}, nil
	}
	var j jwkset.JWK
	var err error
	if m.KTY == jwkset.KtyRSA && m.N == "" && len(m.X5C) > 0 {
		j, err = jwkFromCertificate(m)
	} else {
		// jwkset reads symmetric keys only when asked for private material.
		j, err = jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: m.KTY == jwkset.KtyOct}, jwkValidation)
	}
	if errors.Is(err, jwkset.ErrUnsupportedKey) {
		return jwk{}, nil
	}
	if err == nil {
		err = checkKey(j.Key())
	}
	if err != nil {
		return jwk{}, fmt.Errorf("key %q: %w", m.KID, err)
	}
	if !verifiesJWS(j.Key()) {
		return jwk{}, nil
	}
	return jwk{kid: m.KID, alg: string(m.ALG), key: j.Key()}, nil
}

// jwkFromCertificate reads an RSA JWK that gives its key only as an X.509 certificate (x5c,
// RFC 7517 §4.7), which jwkset.NewJWKFromMarshal refuses for want of n and e.
func jwkFromCertificate(m jwkset.JWKMarshal) (jwkset.JWK, error) {
	der, err := base64.StdEncoding.DecodeString(m.X5C[0])
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("x5c: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("x5c: %w", err)
	}
	return jwkset.NewJWKFromX5C(jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{ALG: m.ALG, KID: m.KID, KEYOPS: m.KEYOPS, USE: m.USE},
		Validate: jwkValidation,
		X509:     jwkset.JWKX509Options{X5C: []*x509.Certificate{cert}},
	})
}

// checkKey applies the limits validate-jwt puts on keys beyond jwkset's: RSA moduli of at
// least 1024 bits with an odd public exponent of at least 3, and non-empty symmetric keys.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 1024 {
			return errors.New("RSA keys shorter than 1024 bits are refused")
		}
		if k.E < 3 || k.E%2 == 0 {
			return errors.New("invalid exponent")
		}
	case []byte:
		if len(k) == 0 {
			return errors.New("empty symmetric key")
		}
	}
	return nil
}

// verifiesJWS reports whether key is of a type that some algorithm of signedMethods verifies
// with (see fits).
func verifiesJWS(key any) bool {
	switch key.(type) {
	case []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// inlineRSAKey parses an <issuer-signing-keys> <key n="…" e="…">: base64 is decoded as
// leniently as APIM does (decodeB64URL), then the key takes the JWK path of fetched keys.
func inlineRSAKey(kid, n, e string) (jwk, error) {
	nb, err := decodeB64URL(n)
	if err != nil {
		return jwk{}, fmt.Errorf("modulus: %w", err)
	}
	eb, err := decodeB64URL(e)
	if err != nil {
		return jwk{}, fmt.Errorf("exponent: %w", err)
	}
	if len(nb) == 0 || len(eb) == 0 {
		return jwk{}, errors.New("n and e must both be given")
	}
	return keyFromJWK(jwkset.JWKMarshal{
		KTY: jwkset.KtyRSA, KID: kid,
		N: base64.RawURLEncoding.EncodeToString(nb), E: base64.RawURLEncoding.EncodeToString(eb),
	})
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
