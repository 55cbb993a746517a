package pipeline

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/pipeline/expr"
)

var (
	hsKey    = []byte("secret-key-for-tests-1234567890!")
	hsKeyB64 = base64.StdEncoding.EncodeToString(hsKey)
	rsaKeys  = sync.OnceValue(func() [2]*rsa.PrivateKey {
		var ks [2]*rsa.PrivateKey
		for i := range ks {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			ks[i] = k
		}
		return ks
	})
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaNE returns the n and e attributes of a public key.
func rsaNE(k *rsa.PublicKey) (string, string) {
	return b64url(k.N.Bytes()), b64url(big.NewInt(int64(k.E)).Bytes())
}

func rs256(t testing.TB, k *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims are claims that satisfy jwtPolicy.
func goodClaims() map[string]any {
	return map[string]any{
		"iss": "https://idp.example/", "aud": []any{"other", "api://gatehouse"}, "sub": "alice",
		"scp": "profile ws.write", "tenant": "t1",
		"exp": testNow.Add(time.Hour).Unix(), "nbf": testNow.Add(-time.Minute).Unix(),
	}
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

const jwtPolicy = `<validate-jwt header-name="Authorization" require-scheme="Bearer" output-token-variable-name="jwt">
	<issuer-signing-keys><key>` + "%KEY%" + `</key></issuer-signing-keys>
	<audiences><audience>api://gatehouse</audience></audiences>
	<issuers><issuer>https://idp.example/</issuer></issuers>
	<required-claims>
		<claim name="scp" match="any" separator=" "><value>ws.read</value><value>ws.write</value></claim>
		<claim name="tenant" />
	</required-claims>
</validate-jwt>`

func jwtDenied(reason, msg string) *Response {
	return &Response{Status: 401, Message: msg, Source: "validate-jwt", Reason: reason}
}

func TestValidateJWTSymmetric(t *testing.T) {
	t.Parallel()
	pol := strings.Replace(jwtPolicy, "%KEY%", hsKeyB64, 1)
	bearer := func(tok string) func(*Request) {
		return func(r *Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	signed := func(c map[string]any) func(*Request) { return bearer(hs256(t, hsKey, "", c)) }
	runPolicyCases(t, []policyCase{
		{
			name: "valid", policies: pol, setup: signed(goodClaims()),
			check: func(t *testing.T, r *Request) {
				if !r.TokenExpiry.Equal(testNow.Add(time.Hour)) {
					t.Errorf("TokenExpiry = %v, want %v", r.TokenExpiry, testNow.Add(time.Hour))
				}
				j, ok := r.Variables["jwt"].(*expr.Jwt)
				if !ok || j.Claims["sub"] != "alice" {
					t.Errorf("variable jwt = %#v, want the token", r.Variables["jwt"])
				}
			},
		},
		{name: "absent", policies: pol, want: jwtDenied("TokenNotPresent", "JWT not present.")},
		{name: "other scheme", policies: pol, setup: func(r *Request) { r.Header.Set("Authorization", "Basic YTpi") }, want: jwtDenied("TokenNotPresent", "JWT not present.")},
		{name: "malformed", policies: pol, setup: bearer("abc.def"), want: jwtDenied("JwtInvalid", "JWT is malformed.")},
		{
			name: "expired", policies: pol, setup: signed(with(goodClaims(), "exp", testNow.Add(-time.Second).Unix())),
			want: jwtDenied("TokenExpired", "Lifetime validation failed. The token is expired. Access denied."),
		},
		{
			name: "no expiration time", policies: pol, setup: signed(with(goodClaims(), "exp", nil)),
			want: jwtDenied("TokenExpired", "Lifetime validation failed. The token is missing an expiration time. Access denied."),
		},
		{
			name: "not yet valid", policies: pol, setup: signed(with(goodClaims(), "nbf", testNow.Add(time.Minute).Unix())),
			want: jwtDenied("TokenNotYetValid", "Lifetime validation failed. The token is not yet valid. Access denied."),
		},
		{
			name: "audience", policies: pol, setup: signed(with(goodClaims(), "aud", "api://other")),
			want: jwtDenied("TokenAudienceNotAllowed", "Audience validation failed. Access denied."),
		},
		{
			name: "issuer", policies: pol, setup: signed(with(goodClaims(), "iss", "https://evil.example/")),
			want: jwtDenied("TokenIssuerNotAllowed", "Issuer validation failed. Access denied."),
		},
		{
			name: "missing claims", policies: pol, setup: signed(with(goodClaims(), "scp", nil, "tenant", nil)),
			want: jwtDenied("TokenClaimNotFound", "JWT token is missing the following claims: scp, tenant. Access denied."),
		},
		{
			name: "claim value", policies: pol, setup: signed(with(goodClaims(), "scp", "profile email")),
			want: jwtDenied("TokenClaimValueNotAllowed", "Claim scp value of profile email is not allowed. Access denied."),
		},
		{
			name: "signed with another key", policies: pol, setup: bearer(hs256(t, []byte("another-key-another-key-another!"), "", goodClaims())),
			want: jwtDenied("TokenSignatureInvalid", "Signature validation failed. Access denied."),
		},
		{
			name: "alg none refused", policies: pol, setup: bearer(unsigned(t, goodClaims())),
			want: jwtDenied("TokenSignatureInvalid", "The token is not signed. Access denied."),
		},
		{
			name:     "kid that no key has",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key id="k1">` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    bearer(hs256(t, hsKey, "k2", goodClaims())),
			want:     jwtDenied("TokenSignatureKeyNotFound", "Signature validation failed. Unable to match key. Access denied."),
		},
		{
			name:     "matching kid",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key id="k1">` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    bearer(hs256(t, hsKey, "k1", goodClaims())),
		},
		{
			name: "custom status and message",
			policies: `<validate-jwt header-name="Authorization" failed-validation-httpcode="403" failed-validation-error-message="Go away">` +
				`<issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			want: &Response{Status: 403, Message: "Go away", Source: "validate-jwt", Reason: "TokenNotPresent"},
		},
		{
			name:     "clock skew",
			policies: `<validate-jwt header-name="Authorization" clock-skew="60"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    signed(with(goodClaims(), "exp", testNow.Add(-30*time.Second).Unix())),
		},
		{
			name:     "Authorization without require-scheme accepts Bearer",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    signed(goodClaims()),
		},
		{
			name:     "custom header ignores require-scheme",
			policies: `<validate-jwt header-name="X-Token" require-scheme="Bearer"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    func(r *Request) { r.Header.Set("X-Token", hs256(t, hsKey, "", goodClaims())) },
		},
		{
			name:     "query parameter",
			policies: `<validate-jwt query-parameter-name="access_token"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    func(r *Request) { r.Query.Set("access_token", hs256(t, hsKey, "", goodClaims())) },
		},
		{
			name:     "token-value expression",
			policies: `<validate-jwt token-value="@(context.Request.Headers.GetValueOrDefault("X-T", ""))"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    func(r *Request) { r.Header.Set("X-T", hs256(t, hsKey, "", goodClaims())) },
		},
		{
			name:     "unsigned tokens when not required",
			policies: `<validate-jwt header-name="Authorization" require-signed-tokens="false" require-expiration-time="false" />`,
			setup:    bearer(unsigned(t, with(goodClaims(), "exp", nil))),
		},
		{
			name: "earliest expiry of several tokens",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>
				<validate-jwt header-name="X-Second"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup: func(r *Request) {
				r.Header.Set("Authorization", "Bearer "+hs256(t, hsKey, "", goodClaims()))
				r.Header.Set("X-Second", hs256(t, hsKey, "", with(goodClaims(), "exp", testNow.Add(time.Minute).Unix())))
			},
			check: func(t *testing.T, r *Request) {
				if want := testNow.Add(time.Minute); !r.TokenExpiry.Equal(want) {
					t.Errorf("TokenExpiry = %v, want %v", r.TokenExpiry, want)
				}
			},
		},
	})
}

func TestValidateJWTRSA(t *testing.T) {
	t.Parallel()
	key := rsaKeys()[0]
	n, e := rsaNE(&key.PublicKey)
	pol := `<validate-jwt header-name="Authorization"><issuer-signing-keys><key n="` + n + `" e="` + e + `" /></issuer-signing-keys></validate-jwt>`
	pkix, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	bearer := func(tok string) func(*Request) {
		return func(r *Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	keyNotFound := jwtDenied("TokenSignatureKeyNotFound", "Signature validation failed. Unable to match key. Access denied.")
	cases := []policyCase{
		{name: "RS256 with n and e", policies: pol, setup: bearer(rs256(t, key, "", goodClaims()))},
		{
			name: "n and e in padded standard base64",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key n="` + base64.StdEncoding.EncodeToString(key.N.Bytes()) +
				`" e="` + base64.StdEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()) + `" /></issuer-signing-keys></validate-jwt>`,
			setup: bearer(rs256(t, key, "", goodClaims())),
		},
		{
			name: "RS256 signed by another key", policies: pol, setup: bearer(rs256(t, rsaKeys()[1], "", goodClaims())),
			want: jwtDenied("TokenSignatureInvalid", "Signature validation failed. Access denied."),
		},
		{
			name:     "RS256 token against symmetric keys",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key>` + hsKeyB64 + `</key></issuer-signing-keys></validate-jwt>`,
			setup:    bearer(rs256(t, key, "", goodClaims())),
			want:     keyNotFound,
		},
	}
	// Algorithm confusion: an HS256 token whose HMAC secret is the RSA public key in any of
	// its usual encodings must find no key.
	for name, secret := range map[string][]byte{"PEM": pemKey, "DER": pkix, "modulus": key.N.Bytes(), "n text": []byte(n)} {
		cases = append(cases, policyCase{
			name: "HS256 forgery keyed with the public key " + name, policies: pol,
			setup: bearer(hs256(t, secret, "", goodClaims())), want: keyNotFound,
		})
	}
	runPolicyCases(t, cases)
}

// jwksServer serves OpenID metadata and a JWKS whose keys can be swapped, counting fetches.
type jwksServer struct {
	*httptest.Server
	keys    atomic.Value // []map[string]string
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://idp.example/", "jwks_uri": s.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys.Load()})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(kid string, k *rsa.PublicKey) {
	n, e := rsaNE(k)
	s.keys.Store([]map[string]string{{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}})
}

func TestValidateJWTOpenIDConfig(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t)
	k1, k2 := rsaKeys()[0], rsaKeys()[1]
	srv.publish("k1", &k1.PublicKey)

	var clock atomic.Int64
	clock.Store(testNow.UnixNano())
	keys := NewKeySource(srv.Client(), nil)
	keys.now = func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	env := testEnv()
	env.Keys = keys
	p := compileInbound(t, env, `<validate-jwt header-name="Authorization">
		<openid-config url="`+srv.URL+`/.well-known/openid-configuration" />
		<audiences><audience>api://gatehouse</audience></audiences>
	</validate-jwt>`)
	run := func(tok string) *Response {
		req := testRequest()
		req.Header.Set("Authorization", "Bearer "+tok)
		return p.Run(context.Background(), req)
	}
	keyNotFound := jwtDenied("TokenSignatureKeyNotFound", "Signature validation failed. Unable to match key. Access denied.")
	steps := []struct {
		name        string
		advance     time.Duration
		rotate      bool
		token       string
		want        *Response
		wantFetches int32
	}{
		{name: "first token fetches the keys", token: rs256(t, k1, "k1", goodClaims()), wantFetches: 1},
		{name: "cached", token: rs256(t, k1, "k1", goodClaims()), wantFetches: 1},
		{name: "keys rotate; unknown kid within 5 minutes does not refetch", rotate: true, advance: time.Minute, token: rs256(t, k2, "k2", goodClaims()), want: keyNotFound, wantFetches: 1},
		{name: "unknown kid after 5 minutes refetches", advance: 5 * time.Minute, token: rs256(t, k2, "k2", goodClaims()), wantFetches: 2},
		{name: "the old key is gone", token: rs256(t, k1, "k1", goodClaims()), want: keyNotFound, wantFetches: 2},
		{name: "still cached 50 minutes later", advance: 50 * time.Minute, token: rs256(t, k2, "k2", goodClaims()), wantFetches: 2},
		{name: "refetched after an hour", advance: 15 * time.Minute, token: rs256(t, k2, "k2", goodClaims()), wantFetches: 3},
		{
			name: "alg none refused", token: unsigned(t, goodClaims()), wantFetches: 3,
			want: jwtDenied("TokenSignatureInvalid", "The token is not signed. Access denied."),
		},
		{name: "HS256 forgery with the JWKS modulus", token: hs256(t, k2.N.Bytes(), "k2", goodClaims()), want: keyNotFound, wantFetches: 3},
	}
	for _, st := range steps {
		advance(st.advance)
		if st.rotate {
			srv.publish("k2", &k2.PublicKey)
		}
		got := run(st.token)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Fatalf("%s: response (-want +got):\n%s", st.name, diff)
		}
		if n := srv.fetches.Load(); n != st.wantFetches {
			t.Fatalf("%s: %d JWKS fetches, want %d", st.name, n, st.wantFetches)
		}
	}
}

func TestKeySourceConcurrentFirstFetch(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t)
	srv.publish("k1", &rsaKeys()[0].PublicKey)
	ks := NewKeySource(srv.Client(), nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if got := ks.keys(context.Background(), srv.URL+"/keys", false); len(got) != 1 {
				t.Errorf("got %d keys, want 1", len(got))
			}
		})
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}
