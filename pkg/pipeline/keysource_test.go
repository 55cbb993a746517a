package pipeline

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// testJWK marshals key (a public or private key, or []byte) as a JWK with kid, through
// jwkset, including the private part when there is one.
func testJWK(t testing.TB, key any, kid string) json.RawMessage {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
		Metadata: jwkset.JWKMetadataOptions{KID: kid},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(j.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// edit decodes a JWK, applies set (a nil value deletes the member) and encodes it again.
func edit(t testing.TB, raw json.RawMessage, set map[string]any) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func selfSigned(t testing.TB, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseJWKs(t *testing.T) {
	t.Parallel()
	rsaKey := rsaKeys()[0]
	rsaPub := testJWK(t, &rsaKey.PublicKey, "rsa")
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// crypto/rsa generates no key this short; the JWK path never checks that n is a product of primes.
	small := &rsa.PublicKey{N: new(big.Int).Rsh(rsaKey.N, 1536), E: 65537}
	cert := base64.StdEncoding.EncodeToString(selfSigned(t, rsaKey))
	otherCert := base64.StdEncoding.EncodeToString(selfSigned(t, rsaKeys()[1]))

	cases := []struct {
		name string
		jwk  json.RawMessage
		want any    // the key, nil when dropped
		err  string // part of the error, when skipped with one
	}{
		{name: "RSA", jwk: rsaPub, want: &rsaKey.PublicKey},
		{name: "RSA private part is not read", jwk: testJWK(t, rsaKey, "rsa"), want: &rsaKey.PublicKey},
		{name: "EC P-384", jwk: testJWK(t, &ecKey.PublicKey, "ec"), want: &ecKey.PublicKey},
		{name: "EC private part is not read", jwk: testJWK(t, ecKey, "ec"), want: &ecKey.PublicKey},
		{name: "Ed25519", jwk: testJWK(t, edPub, "ed"), want: edPub},
		{name: "oct", jwk: testJWK(t, hsKey, "hs"), want: hsKey},
		{name: "RSA from x5c alone", jwk: json.RawMessage(`{"kty":"RSA","kid":"c","x5c":["` + cert + `"]}`), want: &rsaKey.PublicKey},
		{name: "RSA whose x5c matches n and e", jwk: edit(t, rsaPub, map[string]any{"x5c": []string{cert}}), want: &rsaKey.PublicKey},
		{name: "use other than sig or enc", jwk: edit(t, rsaPub, map[string]any{"use": "tls"}), want: &rsaKey.PublicKey},
		{name: "unregistered key_ops", jwk: edit(t, rsaPub, map[string]any{"key_ops": []string{"attest"}}), want: &rsaKey.PublicKey},
		{name: "encryption key dropped", jwk: edit(t, rsaPub, map[string]any{"use": "enc"})},
		{name: "unknown kty dropped", jwk: json.RawMessage(`{"kty":"AKP","kid":"pq","pub":"AAAA"}`)},
		{name: "Ed448 dropped", jwk: json.RawMessage(`{"kty":"OKP","crv":"Ed448","x":"AAAA"}`)},
		{name: "X25519 dropped", jwk: json.RawMessage(`{"kty":"OKP","crv":"X25519","x":"` + b64url(make([]byte, 32)) + `"}`)},
		{name: "RSA whose x5c is another key", jwk: edit(t, rsaPub, map[string]any{"x5c": []string{otherCert}}), err: "X.509"},
		{name: "short RSA key", jwk: testJWK(t, small, "s"), err: "shorter than 1024 bits"},
		{name: "even exponent", jwk: edit(t, rsaPub, map[string]any{"e": "AQAA"}), err: "invalid exponent"},
		{name: "RSA without e", jwk: edit(t, rsaPub, map[string]any{"e": nil}), err: `"n" and "e"`},
		{name: "bad base64url", jwk: edit(t, rsaPub, map[string]any{"n": "!!"}), err: `"n"`},
		{name: "EC point off the curve", jwk: edit(t, testJWK(t, &ecKey.PublicKey, "ec"), map[string]any{"y": b64url([]byte{1})}), err: "curve"},
		{name: "empty symmetric key", jwk: json.RawMessage(`{"kty":"oct","k":"="}`), err: "empty symmetric key"},
		{name: "kid of the wrong type", jwk: edit(t, rsaPub, map[string]any{"kid": 7}), err: "cannot unmarshal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys, skipped := parseJWKs([]json.RawMessage{tc.jwk})
			if tc.err != "" {
				if len(keys) != 0 || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), tc.err) {
					t.Fatalf("got keys %v, errors %v; want one error with %q", keys, skipped, tc.err)
				}
				return
			}
			if len(skipped) != 0 {
				t.Fatalf("errors %v, want none", skipped)
			}
			if tc.want == nil {
				if len(keys) != 0 {
					t.Fatalf("got keys %v, want none", keys)
				}
				return
			}
			if len(keys) != 1 {
				t.Fatalf("got %d keys, want 1", len(keys))
			}
			if !keyEqual(keys[0].key, tc.want) {
				t.Errorf("key = %#v, want %#v", keys[0].key, tc.want)
			}
		})
	}

	t.Run("a bad key does not cost the others", func(t *testing.T) {
		t.Parallel()
		keys, skipped := parseJWKs([]json.RawMessage{json.RawMessage(`{"kty":"RSA","n":5}`), rsaPub, json.RawMessage(`[]`)})
		if len(keys) != 1 || keys[0].kid != "rsa" || len(skipped) != 2 {
			t.Errorf("got keys %v, errors %v; want the one RSA key and two errors", keys, skipped)
		}
	})
}

func keyEqual(a, b any) bool {
	switch a := a.(type) {
	case []byte:
		b, ok := b.([]byte)
		return ok && bytes.Equal(a, b)
	case interface{ Equal(crypto.PublicKey) bool }:
		return a.Equal(b)
	}
	return false
}

// FuzzKeySet feeds arbitrary JWK Sets to the parsing and key selection of fetched keys. It
// never panics; every key it accepts is of a type and size validate-jwt verifies with; and
// when the JWK also holds a consistent private part (always, for oct), a token signed with
// that part under the key's kid and alg finds the key and verifies.
func FuzzKeySet(f *testing.F) {
	rsaKey := rsaKeys()[0]
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	set := func(keys ...json.RawMessage) []byte {
		b, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(set(testJWK(f, rsaKey, "r"), testJWK(f, ecKey, "e"), testJWK(f, edKey, "d"), testJWK(f, hsKey, "h")))
	f.Add(set(edit(f, testJWK(f, rsaKey, "r"), map[string]any{"alg": "PS384"})))
	f.Add(set(edit(f, testJWK(f, ecKey, "e"), map[string]any{"alg": "ES256", "use": "sig"})))
	f.Add(set(json.RawMessage(`{"kty":"RSA","kid":"c","x5c":["` + base64.StdEncoding.EncodeToString(selfSigned(f, rsaKey)) + `"]}`)))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS512"},{"kty":"OKP","crv":"X25519","x":"AAAA"},{}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA","d":"AQ"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var doc struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if json.Unmarshal(data, &doc) != nil {
			return
		}
		keys, _ := parseJWKs(doc.Keys)
		for _, k := range keys {
			if !verifiesJWS(k.key) || checkKey(k.key) != nil {
				t.Fatalf("accepted an unusable key %#v", k.key)
			}
		}
		for _, raw := range doc.Keys {
			accepted, _ := parseJWKs([]json.RawMessage{raw})
			if len(accepted) == 1 {
				checkSignsAndVerifies(t, raw, accepted[0], keys)
			}
		}
	})
}

// checkSignsAndVerifies signs a token with the private part of raw, if it has a consistent
// one, and checks that appendKeys finds k among all the set's keys to verify it.
func checkSignsAndVerifies(t *testing.T, raw json.RawMessage, k jwk, all []jwk) {
	t.Helper()
	priv, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{Private: true}, jwkValidation)
	if err != nil {
		return
	}
	signer := priv.Key()
	switch p := signer.(type) {
	case ed25519.PrivateKey:
		// jwkset takes d and x as given; ed25519.Sign panics when they disagree.
		if full := ed25519.NewKeyFromSeed(p.Seed()); !full.Public().(ed25519.PublicKey).Equal(k.key) {
			return
		}
	case *ecdsa.PrivateKey:
		// Neither jwkset nor ecdsa.Sign checks that d and (x, y) belong together.
		full, err := ecdsa.ParseRawPrivateKey(p.Curve, p.D.FillBytes(make([]byte, (p.Curve.Params().BitSize+7)/8)))
		if err != nil || !full.PublicKey.Equal(k.key) {
			return
		}
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		return // no private part
	}
	alg := k.alg
	if alg == "" {
		alg = defaultAlg(k.key)
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil || !slices.Contains(signedMethods, alg) || !fits(alg, k.key) {
		return // a key whose alg is unknown or not of its family verifies nothing, by design
	}
	tok := jwt.NewWithClaims(method, jwt.MapClaims{"sub": "fuzz"})
	tok.Header["kid"] = k.kid
	signed, err := tok.SignedString(signer)
	if err != nil {
		return // an inconsistent private part, or a key too short for the algorithm
	}
	parser := jwt.NewParser(jwt.WithValidMethods(signedMethods), jwt.WithoutClaimsValidation())
	if _, err := parser.Parse(signed, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return jwt.VerificationKeySet{Keys: appendKeys(nil, all, kid, t.Method.Alg())}, nil
	}); err != nil {
		t.Fatalf("a %s token signed with key %q does not verify: %v", alg, k.kid, err)
	}
}

// defaultAlg is the algorithm a token signed with key uses when the JWK names none.
func defaultAlg(key any) string {
	switch k := key.(type) {
	case []byte:
		return "HS256"
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ES%d", map[string]int{"P-256": 256, "P-384": 384, "P-521": 512}[k.Curve.Params().Name])
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}
