package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/auth"
)

const (
	issuer   = "https://issuer.example.com/"
	audience = "https://management.gatehouse.dev"
	hmacKey  = "a-test-hmac-secret-of-some-length"
)

// claims builds a token's claims valid for an hour; edit functions change them.
func claims(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": "alice",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"subscriptions": []string{"sub-a"}, "roles": []string{"Contributor"},
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

func signHS(t *testing.T, key []byte, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signRS(t *testing.T, key *rsa.PrivateKey, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned is an "alg: none" token: the oldest JWT forgery.
func unsigned(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// jwksServer serves an RFC 7517 JWK Set with the public half of key under kid.
func jwksServer(t *testing.T, key *rsa.PrivateKey, kid string) *httptest.Server {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	set := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return v
}

type authCase struct {
	name   string
	header string
	want   auth.Principal
	// fail means the header must be refused with ErrUnauthenticated.
	fail bool
}

func runCases(t *testing.T, v *auth.Verifier, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := v.Authenticate(tc.header)
			if tc.fail {
				if !errors.Is(err, auth.ErrUnauthenticated) {
					t.Fatalf("Authenticate = %+v, %v; want ErrUnauthenticated", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHMACKey(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{AdminToken: "admin-secret", Issuer: issuer, Audience: audience, Key: hmacKey})
	key := []byte(hmacKey)
	bearer := func(c jwt.MapClaims) string { return "Bearer " + signHS(t, key, c) }
	past := time.Now().Add(-2 * time.Hour)
	runCases(t, v, []authCase{
		{name: "contributor", header: bearer(claims()),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Contributor}},
		{name: "reader", header: bearer(claims(set("roles", []string{"Reader"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Reader}},
		{name: "no roles claim is a reader", header: bearer(claims(del("roles"))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Reader}},
		{name: "unknown role is a reader", header: bearer(claims(set("roles", []string{"Owner"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Reader}},
		{name: "contributor among roles, any case", header: bearer(claims(set("roles", []string{"Reader", "contributor"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Contributor}},
		{name: "several tenants", header: bearer(claims(set("subscriptions", []string{"sub-a", "sub-b"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a", "sub-b"}, Role: auth.Contributor}},
		{name: "all tenants", header: bearer(claims(set("subscriptions", []string{"*"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"*"}, Role: auth.Contributor}},
		{name: "lower-case scheme", header: "bearer " + signHS(t, key, claims()),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Contributor}},
		{name: "admin token", header: "Bearer admin-secret",
			want: auth.Principal{Kind: auth.KindAdmin, Subject: "admin", Subscriptions: []string{"*"}, Role: auth.Contributor}},

		{name: "empty header", header: "", fail: true},
		{name: "scheme only", header: "Bearer", fail: true},
		{name: "empty token", header: "Bearer   ", fail: true},
		{name: "basic auth", header: "Basic YWRtaW46YWRtaW4tc2VjcmV0", fail: true},
		{name: "token without scheme", header: signHS(t, key, claims()), fail: true},
		{name: "garbage", header: "Bearer not.a.jwt", fail: true},
		{name: "admin token prefix", header: "Bearer admin-secre", fail: true},
		{name: "admin token suffix", header: "Bearer admin-secret2", fail: true},
		{name: "wrong secret", header: "Bearer " + signHS(t, []byte("another-secret"), claims()), fail: true},
		{name: "expired", header: bearer(claims(set("exp", past.Unix()))), fail: true},
		{name: "no expiry", header: bearer(claims(del("exp"))), fail: true},
		{name: "not yet valid", header: bearer(claims(set("nbf", time.Now().Add(time.Hour).Unix()))), fail: true},
		{name: "wrong issuer", header: bearer(claims(set("iss", "https://evil.example.com/"))), fail: true},
		{name: "no issuer", header: bearer(claims(del("iss"))), fail: true},
		{name: "wrong audience", header: bearer(claims(set("aud", "https://other.example.com"))), fail: true},
		{name: "no audience", header: bearer(claims(del("aud"))), fail: true},
		{name: "alg none", header: "Bearer " + unsigned(t, claims()), fail: true},
		{name: "RS256 token", header: "Bearer " + signRS(t, rsaKey(t), "", claims()), fail: true},
		{name: "no subscriptions claim", header: bearer(claims(del("subscriptions"))), fail: true},
		{name: "empty subscriptions claim", header: bearer(claims(set("subscriptions", []string{}))), fail: true},
		{name: "subscriptions not a list", header: bearer(claims(set("subscriptions", 42))), fail: true},
	})
}

func TestPEMPublicKey(t *testing.T) {
	t.Parallel()
	key := rsaKey(t)
	pubPEM := publicPEM(t, &key.PublicKey)
	v := newVerifier(t, auth.Config{Issuer: issuer, Audience: audience, Key: pubPEM})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es256, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims()).SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, v, []authCase{
		{name: "RS256", header: "Bearer " + signRS(t, key, "any-kid", claims()),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Contributor}},
		{name: "other RSA key", header: "Bearer " + signRS(t, rsaKey(t), "", claims()), fail: true},
		// The classic algorithm confusion: an HS256 token keyed with the public key's PEM.
		{name: "HS256 keyed with the public PEM", header: "Bearer " + signHS(t, []byte(pubPEM), claims()), fail: true},
		{name: "ES256", header: "Bearer " + es256, fail: true},
		{name: "alg none", header: "Bearer " + unsigned(t, claims()), fail: true},
		{name: "expired", header: "Bearer " + signRS(t, key, "", claims(set("exp", time.Now().Add(-time.Hour).Unix()))), fail: true},
		{name: "admin token off", header: "Bearer ", fail: true},
	})

	ecv := newVerifier(t, auth.Config{Issuer: issuer, Key: publicPEM(t, &ecKey.PublicKey)})
	runCases(t, ecv, []authCase{
		{name: "ES256 with an EC key", header: "Bearer " + es256,
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Contributor}},
		{name: "RS256 with an EC key", header: "Bearer " + signRS(t, key, "", claims()), fail: true},
	})
}

func TestJWKSURL(t *testing.T) {
	t.Parallel()
	key := rsaKey(t)
	srv := jwksServer(t, key, "key-1")
	v := newVerifier(t, auth.Config{AdminToken: "admin-secret", Issuer: issuer, Audience: audience, JWKSURL: srv.URL})
	pubPEM := publicPEM(t, &key.PublicKey)
	runCases(t, v, []authCase{
		{name: "RS256 with the key's kid", header: "Bearer " + signRS(t, key, "key-1", claims(set("roles", []string{"Reader"}))),
			want: auth.Principal{Kind: auth.KindTenant, Subject: "alice", Subscriptions: []string{"sub-a"}, Role: auth.Reader}},
		{name: "admin token", header: "Bearer admin-secret",
			want: auth.Principal{Kind: auth.KindAdmin, Subject: "admin", Subscriptions: []string{"*"}, Role: auth.Contributor}},
		{name: "another key under the same kid", header: "Bearer " + signRS(t, rsaKey(t), "key-1", claims()), fail: true},
		{name: "unknown kid", header: "Bearer " + signRS(t, rsaKey(t), "key-2", claims()), fail: true},
		{name: "HS256", header: "Bearer " + signHS(t, []byte(hmacKey), claims()), fail: true},
		{name: "HS256 keyed with the public PEM", header: "Bearer " + signHS(t, []byte(pubPEM), claims()), fail: true},
		{name: "alg none", header: "Bearer " + unsigned(t, claims()), fail: true},
		{name: "wrong audience", header: "Bearer " + signRS(t, key, "key-1", claims(set("aud", "x"))), fail: true},
		{name: "wrong issuer", header: "Bearer " + signRS(t, key, "key-1", claims(set("iss", "x"))), fail: true},
		{name: "expired", header: "Bearer " + signRS(t, key, "key-1", claims(set("exp", time.Now().Add(-time.Hour).Unix()))), fail: true},
		{name: "no subscriptions claim", header: "Bearer " + signRS(t, key, "key-1", claims(del("subscriptions"))), fail: true},
	})
}

func TestJWTAuthOff(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{AdminToken: "admin-secret"})
	runCases(t, v, []authCase{
		{name: "admin token", header: "Bearer admin-secret",
			want: auth.Principal{Kind: auth.KindAdmin, Subject: "admin", Subscriptions: []string{"*"}, Role: auth.Contributor}},
		{name: "a well-formed JWT", header: "Bearer " + signHS(t, []byte(hmacKey), claims()), fail: true},
		{name: "alg none", header: "Bearer " + unsigned(t, claims()), fail: true},
	})
	none := newVerifier(t, auth.Config{})
	runCases(t, none, []authCase{
		// With no admin token configured, an empty token must not match the empty admin token.
		{name: "empty token, no admin token", header: "Bearer ", fail: true},
		{name: "any token, no admin token", header: "Bearer x", fail: true},
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  auth.Config
	}{
		{"issuer without keys", auth.Config{Issuer: issuer}},
		{"PEM that does not decode", auth.Config{Issuer: issuer, Key: "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"}},
		{"private key PEM", auth.Config{Issuer: issuer, Key: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if v, err := auth.New(t.Context(), tc.cfg); err == nil {
				t.Fatalf("auth.New = %v, nil; want an error", v)
			}
		})
	}
}

func TestPrincipal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		p        auth.Principal
		sub      string
		access   bool
		canWrite bool
	}{
		{name: "listed tenant", p: auth.Principal{Subscriptions: []string{"sub-a", "sub-b"}, Role: auth.Reader}, sub: "sub-b", access: true},
		{name: "tenant ids ignore case", p: auth.Principal{Subscriptions: []string{"SUB-A"}, Role: auth.Contributor}, sub: "sub-a", access: true, canWrite: true},
		{name: "unlisted tenant", p: auth.Principal{Subscriptions: []string{"sub-a"}, Role: auth.Contributor}, sub: "sub-b", canWrite: true},
		{name: "prefix of a listed tenant", p: auth.Principal{Subscriptions: []string{"sub-a"}, Role: auth.Contributor}, sub: "sub-", canWrite: true},
		{name: "empty tenant", p: auth.Principal{Subscriptions: []string{"sub-a"}, Role: auth.Contributor}, sub: "", canWrite: true},
		{name: "wildcard", p: auth.Principal{Subscriptions: []string{"*"}, Role: auth.Reader}, sub: "anything", access: true},
		{name: "no tenants", p: auth.Principal{Role: auth.Contributor}, sub: "sub-a", canWrite: true},
		{name: "zero role", p: auth.Principal{Subscriptions: []string{"*"}}, sub: "sub-a", access: true},
		{name: "consumer", p: auth.NewConsumer("7b0c4e57-5b1e-4bd4-8f1a-0c6a3f0d9a11", "alice"), sub: "sub-a"},
		{name: "consumer and the empty tenant", p: auth.NewConsumer("7b0c4e57-5b1e-4bd4-8f1a-0c6a3f0d9a11", "alice"), sub: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.p.CanAccess(tc.sub); got != tc.access {
				t.Errorf("CanAccess(%q) = %v, want %v", tc.sub, got, tc.access)
			}
			if got := tc.p.CanWrite(); got != tc.canWrite {
				t.Errorf("CanWrite() = %v, want %v", got, tc.canWrite)
			}
		})
	}
}
