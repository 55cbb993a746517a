package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/mgmttest"
)

// Two tenants (ARM subscription ids) and the issuer whose JWTs name them.
const (
	tenantA     = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	tenantB     = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	jwtIssuerID = "https://login.example.com/gatehouse/"
	jwtAudience = "https://management.gatehouse.test"
	jwtKID      = "signing-key-1"
)

// jwtIssuer signs RS256 tokens and serves its public key as an RFC 7517 JWK Set.
type jwtIssuer struct {
	key  *rsa.PrivateKey
	jwks *httptest.Server
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": jwtKID,
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	return &jwtIssuer{key: key, jwks: srv}
}

// claims returns valid claims for a caller of tenants with role; edits change them.
func jwtClaims(role string, tenants []string, edits ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": jwtIssuerID, "aud": jwtAudience, "sub": "caller-" + strings.ToLower(role),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "subscriptions": tenants, "roles": []string{role}}
	for _, e := range edits {
		e(c)
	}
	return c
}

// sign signs claims with method and key, under the issuer's kid.
func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = jwtKID
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// token is a valid bearer header value for tenants with role.
func (i *jwtIssuer) token(t *testing.T, role string, tenants ...string) string {
	t.Helper()
	return "Bearer " + sign(t, jwt.SigningMethodRS256, i.key, jwtClaims(role, tenants))
}

// tenantFixture is one tenant's service, seeded with one resource of each kind, and every secret
// its list* actions reveal.
type tenantFixture struct {
	id      string
	svc     string
	secrets []string
}

// seedTenant creates, with the admin token, a service holding a WebSocket API, a product with
// the API, a user, two subscriptions (given and generated keys), a gateway with the API, a secret
// named value and a global policy.
func seedTenant(t *testing.T, env *mgmttest.Env, id, name string) tenantFixture {
	t.Helper()
	f := tenantFixture{id: id, svc: env.CreateService(t, id, "rg", name)}
	put := func(rel string, props map[string]any) {
		t.Helper()
		var body any
		if props != nil {
			body = map[string]any{"properties": props}
		}
		env.Must(t, []int{200, 201}, "PUT", f.svc+rel, body)
	}
	put("/apis/chat", map[string]any{"displayName": "Chat", "type": "websocket", "serviceUrl": "wss://chat.example.com", "path": "chat"})
	put("/products/starter", map[string]any{"displayName": "Starter", "state": "published"})
	put("/products/starter/apis/chat", nil)
	put("/users/u1", map[string]any{"email": "u1@" + name + ".example.com", "firstName": "Una", "lastName": "One"})
	put("/subscriptions/s1", map[string]any{"scope": "/apis/chat", "displayName": "Given keys", "ownerId": "/users/u1", "state": "active",
		"primaryKey": "given-primary-" + name, "secondaryKey": "given-secondary-" + name})
	put("/subscriptions/s2", map[string]any{"scope": "/products/starter", "displayName": "Generated keys", "state": "active"})
	put("/gateways/gw1", map[string]any{"locationData": map[string]any{"name": "edge"}})
	put("/gateways/gw1/apis/chat", nil)
	put("/namedValues/secret1", map[string]any{"displayName": "secret1", "value": "named-secret-" + name, "secret": true})
	put("/policies/policy", map[string]any{"format": "xml", "value": "<policies><inbound><set-header name=\"X-Tenant\" exists-action=\"override\"><value>" + name + "</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"})
	f.secrets = revealSecrets(t, env, f.svc, "Bearer "+env.Token)
	return f
}

// revealSecrets returns every secret of a seeded service through its list* actions.
func revealSecrets(t *testing.T, env *mgmttest.Env, svc, token string) []string {
	t.Helper()
	var out []string
	for _, a := range []struct{ path string }{
		{"/subscriptions/s1/listSecrets"}, {"/subscriptions/s2/listSecrets"}, {"/gateways/gw1/listKeys"}, {"/namedValues/secret1/listValue"},
	} {
		var m map[string]string
		r := env.Must(t, []int{200}, "POST", svc+a.path, nil, "Authorization", token)
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("%s: %v", a.path, err)
		}
		for _, v := range m {
			if v == "" {
				t.Fatalf("%s revealed an empty secret: %s", a.path, r.Body)
			}
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// leaks returns the secrets that appear in s as plaintext, hex or base64.
func leaks(s string, secrets []string) []string {
	var out []string
	for _, sec := range secrets {
		for _, form := range []string{sec, fmt.Sprintf("%x", sec), base64.StdEncoding.EncodeToString([]byte(sec)), base64.RawURLEncoding.EncodeToString([]byte(sec))} {
			if strings.Contains(s, form) {
				out = append(out, sec)
				break
			}
		}
	}
	return out
}

// wantAuthError fails unless r is an ARM error with status and code and reveals none of secrets.
func wantAuthError(t *testing.T, r mgmttest.Response, status int, code string, secrets []string) {
	t.Helper()
	var e armEnvelope
	if r.Status != status || json.Unmarshal(r.Body, &e) != nil || e.Error == nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("status %d, body %s; want %d with ARM error %s", r.Status, r.Body, status, code)
	}
	if got := r.Header.Get("x-ms-error-code"); got != code {
		t.Errorf("x-ms-error-code %q, want %q", got, code)
	}
	if l := leaks(string(r.Body), secrets); len(l) > 0 {
		t.Errorf("error body reveals secrets %q: %s", l, r.Body)
	}
}

// request is one call of the ARM API below a service ("" is the service itself).
type request struct {
	method, rel string
	body        any
}

// everyCall is each kind of call a tenant could make on a seeded service: reads, lists, writes
// and the list* actions.
func everyCall() []request {
	api := map[string]any{"properties": map[string]any{"displayName": "X", "type": "websocket", "serviceUrl": "wss://x.example.com", "path": "x"}}
	return []request{
		{"GET", "", nil},
		{"HEAD", "", nil},
		{"GET", "/apis", nil},
		{"GET", "/apis/chat", nil},
		{"HEAD", "/apis/chat", nil},
		{"GET", "/apis/chat/operations", nil},
		{"GET", "/apis/chat/operations/onHandshake", nil},
		{"GET", "/apis/chat/products", nil},
		{"GET", "/products", nil},
		{"GET", "/products/starter/apis", nil},
		{"GET", "/products/starter/subscriptions", nil},
		{"GET", "/users/u1/subscriptions", nil},
		{"GET", "/subscriptions", nil},
		{"GET", "/subscriptions/s1", nil},
		{"GET", "/gateways/gw1", nil},
		{"GET", "/gateways/gw1/apis", nil},
		{"GET", "/namedValues", nil},
		{"GET", "/namedValues/secret1", nil},
		{"GET", "/policies/policy", nil},
		{"PUT", "", map[string]any{"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
			"properties": map[string]any{"publisherEmail": "evil@example.com", "publisherName": "Evil"}}},
		{"PATCH", "", map[string]any{"properties": map[string]any{"publisherName": "Evil"}}},
		{"PUT", "/apis/x", api},
		{"PUT", "/apis/chat", api},
		{"PATCH", "/apis/chat", map[string]any{"properties": map[string]any{"serviceUrl": "wss://evil.example.com"}}},
		{"PUT", "/subscriptions/evil", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Evil", "state": "active", "primaryKey": "evil-primary", "secondaryKey": "evil-secondary"}}},
		{"PATCH", "/subscriptions/s1", map[string]any{"properties": map[string]any{"primaryKey": "evil-primary"}}},
		{"PUT", "/namedValues/secret1", map[string]any{"properties": map[string]any{"displayName": "secret1", "value": "evil", "secret": true}}},
		{"PUT", "/policies/policy", map[string]any{"properties": map[string]any{"format": "xml", "value": "<policies><inbound /><backend><forward-request /></backend><outbound /><on-error /></policies>"}}},
		{"PUT", "/gateways/gw1/apis/chat", nil},
		{"DELETE", "/products/starter/apis/chat", nil},
		{"DELETE", "/subscriptions/s1", nil},
		{"DELETE", "/apis/chat", nil},
		{"DELETE", "", nil},
		{"POST", "/subscriptions/s1/listSecrets", nil},
		{"POST", "/subscriptions/s1/regeneratePrimaryKey", nil},
		{"POST", "/subscriptions/s1/regenerateSecondaryKey", nil},
		{"POST", "/gateways/gw1/listKeys", nil},
		{"POST", "/gateways/gw1/regenerateKey", map[string]any{"keyType": "primary"}},
		{"POST", "/gateways/gw1/generateToken", map[string]any{"keyType": "primary", "expiry": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}},
		{"POST", "/namedValues/secret1/listValue", nil},
	}
}

func isRead(method string) bool { return method == "GET" || method == "HEAD" }

// startTenants starts management with JWT auth on a JWKS and seeds tenants A and B.
func startTenants(t *testing.T) (*mgmttest.Env, *jwtIssuer, tenantFixture, tenantFixture) {
	t.Helper()
	iss := newJWTIssuer(t)
	env := mgmttest.Start(t, mgmttest.Options{Auth: auth.Config{AdminToken: mgmttest.AdminToken,
		Issuer: jwtIssuerID, Audience: jwtAudience, JWKSURL: iss.jwks.URL}})
	return env, iss, seedTenant(t, env, tenantA, "svc-a"), seedTenant(t, env, tenantB, "svc-b")
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	aContributor := iss.token(t, "Contributor", tenantA)
	upperB := strings.Replace(b.svc, tenantB, strings.ToUpper(tenantB), 1)

	// A's token works on A's service, so every refusal below is about the tenant, not the token.
	env.Must(t, []int{200}, "GET", a.svc+"/apis/chat", nil, "Authorization", aContributor)
	if got := revealSecrets(t, env, a.svc, aContributor); len(got) != len(a.secrets) {
		t.Fatalf("A revealed %d of its secrets, want %d", len(got), len(a.secrets))
	}

	for _, svc := range []string{b.svc, upperB} {
		for _, c := range everyCall() {
			t.Run(fmt.Sprintf("%s %s%s", c.method, strings.TrimPrefix(svc, "/subscriptions/"), c.rel), func(t *testing.T) {
				before := dbStateOf(t, env)
				r := env.Do(t, c.method, svc+c.rel, c.body, "Authorization", aContributor, "If-Match", "*")
				if c.method == "HEAD" {
					if r.Status != 403 {
						t.Errorf("status %d, want 403", r.Status)
					}
				} else {
					wantAuthError(t, r, 403, "AuthorizationFailed", b.secrets)
				}
				wantUnchanged(t, env, before)
			})
		}
	}
	for _, path := range []string{
		"/subscriptions/" + tenantB + "/providers/Microsoft.ApiManagement/service",
		"/subscriptions/" + tenantB + "/resourceGroups/rg/providers/Microsoft.ApiManagement/service",
		"/subscriptions/" + strings.ToUpper(tenantB) + "/providers/Microsoft.ApiManagement/service",
	} {
		t.Run("list services of "+path, func(t *testing.T) {
			wantAuthError(t, env.Do(t, "GET", path, nil, "Authorization", aContributor), 403, "AuthorizationFailed", b.secrets)
		})
	}
	t.Run("A lists only its own services", func(t *testing.T) {
		r := env.Must(t, []int{200}, "GET", "/subscriptions/"+tenantA+"/providers/Microsoft.ApiManagement/service", nil, "Authorization", aContributor)
		if got := listNames(t, r); len(got) != 1 || got[0] != "svc-a" {
			t.Errorf("services %q, want [svc-a]", got)
		}
	})
	// Paths that try to smuggle B's id past the check on A's.
	for _, path := range []string{
		"/subscriptions/" + tenantA + "/../" + tenantB + "/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc-b/subscriptions/s1/listSecrets",
		"/subscriptions/" + tenantA + "%2F..%2F" + tenantB + "/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc-b/subscriptions/s1/listSecrets",
		"/subscriptions/" + tenantA + "/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc-b/subscriptions/s1/listSecrets",
		"/subscriptions/%62bbbbbbb-2222-4222-8222-bbbbbbbbbbbb/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc-b/subscriptions/s1/listSecrets",
	} {
		t.Run("smuggled "+path, func(t *testing.T) {
			before := dbStateOf(t, env)
			r := env.Do(t, "POST", path, nil, "Authorization", aContributor)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("status %d, want a 4xx; body %s", r.Status, r.Body)
			}
			if l := leaks(string(r.Body), b.secrets); len(l) > 0 {
				t.Errorf("body reveals B's secrets %q: %s", l, r.Body)
			}
			wantUnchanged(t, env, before)
		})
	}
	// References from A's resources to B's are refused, so A cannot reach B's APIs through them.
	for _, tc := range []struct{ name, rel, field, value string }{
		{"subscription scoped to B's API", "/subscriptions/evil", "scope", b.svc + "/apis/chat"},
		{"subscription scoped to B's product", "/subscriptions/evil", "scope", b.svc + "/products/starter"},
		{"subscription scoped to all of B's APIs", "/subscriptions/evil", "scope", b.svc + "/apis"},
		{"subscription owned by B's user", "/subscriptions/evil", "ownerId", b.svc + "/users/u1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := map[string]any{"scope": "/apis", "displayName": "Evil", "state": "active", tc.field: tc.value}
			before := dbStateOf(t, env)
			r := env.Do(t, "PUT", a.svc+tc.rel, map[string]any{"properties": props}, "Authorization", aContributor)
			wantARMError(t, r, 400, true)
			wantUnchanged(t, env, before)
		})
	}
	// B's secrets are still B's: A neither learned nor changed them.
	if got := revealSecrets(t, env, b.svc, iss.token(t, "Contributor", tenantB)); strings.Join(got, ",") != strings.Join(b.secrets, ",") {
		t.Errorf("B's secrets changed: %q, want %q", got, b.secrets)
	}
}

func TestReaderRole(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	for _, tc := range []struct {
		name  string
		token string
		svc   tenantFixture
	}{
		{"reader of A", iss.token(t, "Reader", tenantA), a},
		{"reader of every tenant", iss.token(t, "Reader", "*"), b},
		{"no role claim", "Bearer " + sign(t, jwt.SigningMethodRS256, iss.key, jwtClaims("", []string{tenantA}, func(c jwt.MapClaims) { delete(c, "roles") })), a},
	} {
		for _, c := range everyCall() {
			t.Run(tc.name+"/"+c.method+" "+c.rel, func(t *testing.T) {
				before := dbStateOf(t, env)
				r := env.Do(t, c.method, tc.svc.svc+c.rel, c.body, "Authorization", tc.token, "If-Match", "*")
				switch {
				case isRead(c.method):
					if r.Status != 200 {
						t.Errorf("status %d, want 200; body %s", r.Status, r.Body)
					}
					if l := leaks(string(r.Body), append(a.secrets, b.secrets...)); len(l) > 0 {
						t.Errorf("a read reveals secrets %q: %s", l, r.Body)
					}
				default:
					wantAuthError(t, r, 403, "AuthorizationFailed", append(a.secrets, b.secrets...))
				}
				wantUnchanged(t, env, before)
			})
		}
	}
	t.Run("reader lists services", func(t *testing.T) {
		env.Must(t, []int{200}, "GET", "/subscriptions/"+tenantA+"/providers/Microsoft.ApiManagement/service", nil, "Authorization", iss.token(t, "Reader", tenantA))
	})
	t.Run("contributor of every tenant", func(t *testing.T) {
		all := iss.token(t, "Contributor", "*")
		for _, f := range []tenantFixture{a, b} {
			if got := revealSecrets(t, env, f.svc, all); strings.Join(got, ",") != strings.Join(f.secrets, ",") {
				t.Errorf("secrets of %s: %q, want %q", f.id, got, f.secrets)
			}
			env.Must(t, []int{200}, "PATCH", f.svc+"/apis/chat", map[string]any{"properties": map[string]any{"description": "changed"}},
				"Authorization", all, "If-Match", "*")
		}
	})
	t.Run("admin token", func(t *testing.T) {
		for _, f := range []tenantFixture{a, b} {
			env.Must(t, []int{200}, "GET", "/subscriptions/"+f.id+"/providers/Microsoft.ApiManagement/service", nil)
			if got := revealSecrets(t, env, f.svc, "Bearer "+mgmttest.AdminToken); strings.Join(got, ",") != strings.Join(f.secrets, ",") {
				t.Errorf("secrets of %s: %q, want %q", f.id, got, f.secrets)
			}
			env.Must(t, []int{200}, "PATCH", f.svc+"/apis/chat", map[string]any{"properties": map[string]any{"description": "admin"}}, "If-Match", "*")
		}
	})
}

func TestAuthenticationFailures(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	secrets := append(a.secrets, b.secrets...)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&iss.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	valid := jwtClaims("Contributor", []string{tenantA})
	edit := func(k string, v any) jwt.MapClaims {
		c := jwtClaims("Contributor", []string{tenantA})
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rs := func(c jwt.MapClaims) string { return "Bearer " + sign(t, jwt.SigningMethodRS256, iss.key, c) }
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	unknownKID := jwt.NewWithClaims(jwt.SigningMethodRS256, valid)
	unknownKID.Header["kid"] = "another-key"
	unknownKIDToken, err := unknownKID.SignedString(other)
	if err != nil {
		t.Fatal(err)
	}
	var gwToken struct{ Value string }
	_ = json.Unmarshal(env.Must(t, []int{200}, "POST", a.svc+"/gateways/gw1/generateToken",
		map[string]any{"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).Body, &gwToken)
	for _, tc := range []struct{ name, header string }{
		{"no Authorization header", ""},
		{"a gateway token", "GatewayKey " + gwToken.Value},
		{"a gateway token as bearer", "Bearer " + gwToken.Value},
		{"scheme only", "Bearer"},
		{"basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+mgmttest.AdminToken))},
		{"admin token without scheme", mgmttest.AdminToken},
		{"wrong admin token", "Bearer " + mgmttest.AdminToken + "x"},
		{"garbage", "Bearer eyJhbGciOiJSUzI1NiJ9.garbage.garbage"},
		{"a subscription key", "Bearer given-primary-svc-a"},
		{"expired", rs(edit("exp", time.Now().Add(-time.Hour).Unix()))},
		{"no expiry", rs(edit("exp", nil))},
		{"not yet valid", rs(edit("nbf", time.Now().Add(time.Hour).Unix()))},
		{"wrong issuer", rs(edit("iss", "https://evil.example.com/"))},
		{"wrong audience", rs(edit("aud", "https://management.evil.test"))},
		{"no subscriptions claim", rs(edit("subscriptions", nil))},
		{"empty subscriptions claim", rs(edit("subscriptions", []string{}))},
		{"alg none", "Bearer " + none},
		{"HS256 with a shared secret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("any-shared-secret"), valid)},
		{"HS256 keyed with the public key", "Bearer " + sign(t, jwt.SigningMethodHS256, publicPEM, valid)},
		{"another RSA key under the issuer's kid", "Bearer " + sign(t, jwt.SigningMethodRS256, other, valid)},
		{"unknown kid", "Bearer " + unknownKIDToken},
		{"tampered claims", tamper(t, rs(valid), jwtClaims("Contributor", []string{"*"}))},
	} {
		for _, c := range []request{
			{"GET", a.svc, nil},
			{"GET", "/subscriptions/" + tenantA + "/providers/Microsoft.ApiManagement/service", nil},
			{"POST", a.svc + "/subscriptions/s1/listSecrets", nil},
			{"PUT", a.svc + "/apis/intruder", map[string]any{"properties": map[string]any{"displayName": "I", "path": "intruder"}}},
			{"DELETE", b.svc + "/apis/chat", nil},
		} {
			t.Run(tc.name+"/"+c.method+" "+c.rel, func(t *testing.T) {
				before := dbStateOf(t, env)
				r := env.Do(t, c.method, c.rel, c.body, "Authorization", tc.header, "If-Match", "*")
				wantAuthError(t, r, 401, "AuthenticationFailed", secrets)
				if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", h)
				}
				wantUnchanged(t, env, before)
			})
		}
	}
	t.Run("the log holds no secret", func(t *testing.T) {
		if l := leaks(env.Log.String(), secrets); len(l) > 0 {
			t.Errorf("the log holds secrets %q", l)
		}
	})
}

// tamper replaces the payload of a signed token with c, keeping header and signature.
func tamper(t *testing.T, bearer string, c jwt.MapClaims) string {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(bearer, "Bearer "), ".")
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return "Bearer " + strings.Join(parts, ".")
}

func TestJWTAuthWithHMACKey(t *testing.T) {
	t.Parallel()
	const secret = "management-hmac-secret-for-tests"
	env := mgmttest.Start(t, mgmttest.Options{Auth: auth.Config{AdminToken: mgmttest.AdminToken,
		Issuer: jwtIssuerID, Audience: jwtAudience, Key: secret}})
	svc := mgmttest.ServicePath(tenantA, "rg", "svc-hmac")
	body := map[string]any{"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
		"properties": map[string]any{"publisherEmail": "admin@example.com", "publisherName": "Example"}}
	contributor := "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), jwtClaims("Contributor", []string{tenantA}))
	env.Must(t, []int{201}, "PUT", svc, body, "Authorization", contributor)
	env.Must(t, []int{200}, "GET", svc, nil, "Authorization", contributor)
	reader := "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), jwtClaims("Reader", []string{tenantA}))
	env.Must(t, []int{200}, "GET", svc, nil, "Authorization", reader)
	wantAuthError(t, env.Do(t, "PUT", svc, body, "Authorization", reader), 403, "AuthorizationFailed", nil)
	other := "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), jwtClaims("Contributor", []string{tenantB}))
	wantAuthError(t, env.Do(t, "GET", svc, nil, "Authorization", other), 403, "AuthorizationFailed", nil)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, header := range map[string]string{
		"another secret": "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), jwtClaims("Contributor", []string{tenantA})),
		"RS256":          "Bearer " + sign(t, jwt.SigningMethodRS256, key, jwtClaims("Contributor", []string{tenantA})),
	} {
		t.Run(name, func(t *testing.T) {
			wantAuthError(t, env.Do(t, "GET", svc, nil, "Authorization", header), 401, "AuthenticationFailed", nil)
		})
	}
}

func TestSecretsAtRest(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	f := seedTenant(t, env, tenantA, "svc-rest")
	svc := f.svc
	secrets := f.secrets
	// Rotations: the new keys must be sealed too.
	env.Must(t, []int{204}, "POST", svc+"/subscriptions/s2/regeneratePrimaryKey", nil)
	env.Must(t, []int{204}, "POST", svc+"/gateways/gw1/regenerateKey", map[string]any{"keyType": "secondary"})
	env.Must(t, []int{200}, "PATCH", svc+"/subscriptions/s1", map[string]any{"properties": map[string]any{"secondaryKey": "patched-secondary-key"}}, "If-Match", "*")
	env.Must(t, []int{200}, "PATCH", svc+"/namedValues/secret1", map[string]any{"properties": map[string]any{"value": "patched-named-secret"}}, "If-Match", "*")
	env.Must(t, []int{201}, "PUT", svc+"/namedValues/plainthenSecret", map[string]any{"properties": map[string]any{"displayName": "later-secret", "value": "a public value"}})
	env.Must(t, []int{200}, "PUT", svc+"/namedValues/plainthenSecret", map[string]any{"properties": map[string]any{"displayName": "later-secret", "value": "made-secret-value", "secret": true}})
	secrets = append(secrets, revealSecrets(t, env, svc, "Bearer "+env.Token)...)
	secrets = append(secrets, "patched-secondary-key", "patched-named-secret", "made-secret-value")
	// A refused write carrying a key, and a key sent as a bearer token, must not reach the log.
	env.Must(t, []int{400}, "PUT", svc+"/subscriptions/dup", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Dup", "primaryKey": "given-primary-svc-rest"}})
	env.Must(t, []int{401}, "GET", svc, nil, "Authorization", "Bearer given-primary-svc-rest")

	// The gateway's snapshot carries key hashes, never keys.
	var tok struct{ Value string }
	_ = json.Unmarshal(env.Must(t, []int{200}, "POST", svc+"/gateways/gw1/generateToken",
		map[string]any{"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).Body, &tok)
	snap := env.Must(t, []int{200}, "GET", "/gatehouse/gateway/v1/config", nil, "Authorization", "GatewayKey "+tok.Value)
	var subKeys []string
	for _, s := range []string{"/subscriptions/s1/listSecrets", "/subscriptions/s2/listSecrets", "/gateways/gw1/listKeys"} {
		var m map[string]string
		_ = json.Unmarshal(env.Must(t, []int{200}, "POST", svc+s, nil).Body, &m)
		for _, v := range m {
			subKeys = append(subKeys, v)
		}
	}
	if l := leaks(string(snap.Body), subKeys); len(l) > 0 {
		t.Errorf("the gateway snapshot holds keys %q", l)
	}

	ctx := context.Background()
	rows, err := env.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	dumped := map[string]int{}
	for _, table := range tables {
		rows, err := env.Pool.Query(ctx, `SELECT row_to_json(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range lines {
			if l := leaks(line, secrets); len(l) > 0 {
				t.Errorf("table %s holds secrets %q in plaintext: %.300s", table, l, line)
			}
		}
		dumped[table] = len(lines)
	}
	for _, table := range []string{"services", "resources", "outbox"} {
		if dumped[table] == 0 {
			t.Errorf("table %s: %d rows dumped, want some (dumped %v)", table, dumped[table], dumped)
		}
	}
	// The secrets are there, sealed: every resource that has one has a sealed column.
	var sealed int
	if err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM resources WHERE sealed IS NOT NULL AND kind IN ('subscriptions', 'gateways', 'namedValues')`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if sealed != 5 {
		t.Errorf("%d resources with sealed secrets, want 5 (2 subscriptions, 1 gateway, 2 secret named values)", sealed)
	}
	if l := leaks(env.Log.String(), secrets); len(l) > 0 {
		t.Errorf("the service log holds secrets %q", l)
	}
}
