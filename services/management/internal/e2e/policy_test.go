package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

// TestPolicies sets onHandshake, product and global policies through management's ARM API and
// checks that a gateway enforces them (scenario 2).
func TestPolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	main := newBackend(t, "main", "")
	alt := newBackend(t, "alt", "")

	jwtKey := make([]byte, 32)
	_, _ = rand.Read(jwtKey)
	jwtKeyB64 := base64.StdEncoding.EncodeToString(jwtKey)
	s.put(t, "/namedValues/jwt-key", map[string]any{"displayName": "jwt-key", "value": jwtKeyB64, "secret": true})
	s.secret(jwtKeyB64, "the secret named value jwt-key")

	s.put(t, "/policies/policy", map[string]any{"format": "xml", "value": `<policies><inbound>
		<set-header name="X-Global" exists-action="override"><value>yes</value></set-header>
	</inbound><backend><forward-request/></backend><outbound/><on-error/></policies>`})

	policies := map[string]string{
		"ipfilter": `<ip-filter action="forbid"><address>127.0.0.1</address></ip-filter>`,
		"allowip":  `<ip-filter action="allow"><address-range from="10.0.0.1" to="10.0.0.255"/></ip-filter>`,
		"header": `<check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Tenant not allowed" ignore-case="true">
			<value>contoso</value></check-header>`,
		"jwt": `<validate-jwt query-parameter-name="access_token">
			<issuer-signing-keys><key>{{jwt-key}}</key></issuer-signing-keys>
			<audiences><audience>chat</audience></audiences></validate-jwt>`,
		"ratelimit": `<rate-limit calls="2" renewal-period="60"/>`,
		"quota":     `<quota calls="1" renewal-period="3600"/>`,
		"transform": `<set-header name="X-Injected" exists-action="override"><value>from-policy</value></set-header>
			<set-header name="X-Remove-Me" exists-action="delete"/>
			<set-query-parameter name="region" exists-action="override"><value>eu</value></set-query-parameter>`,
		"redirect": `<set-backend-service base-url="` + alt.wsURL("/alt/hub") + `"/>`,
		"return": `<return-response><set-status code="418" reason="Teapot"/>
			<set-header name="X-Why" exists-action="override"><value>policy</value></set-header>
			<set-body>short and stout</set-body></return-response>`,
		"product": ``,
		"jwtheader": `<validate-jwt header-name="Authorization" require-scheme="Bearer">
			<issuer-signing-keys><key>{{jwt-key}}</key></issuer-signing-keys>
			<required-claims><claim name="role" match="any"><value>reader</value><value>writer</value></claim></required-claims></validate-jwt>`,
		"bykey": `<rate-limit-by-key calls="1" renewal-period="30" counter-key="@(context.Request.IpAddress + &quot;/&quot; + context.Request.Headers.GetValueOrDefault(&quot;X-Client&quot;, &quot;none&quot;))"/>`,
		"choose": `<choose>
			<when condition="@(context.Request.Url.Query.GetValueOrDefault(&quot;mode&quot;, &quot;&quot;) == &quot;maintenance&quot;)">
				<return-response><set-status code="503" reason="Maintenance"/></return-response>
			</when>
			<otherwise><set-header name="X-Mode" exists-action="override"><value>@(context.Subscription.Name)</value></set-header></otherwise>
		</choose>`,
	}
	for name, inbound := range policies {
		s.wsAPI(t, name, name, main.wsURL("/"+name), nil)
		s.handshakePolicy(t, name, "<policies><inbound><base/>"+inbound+"</inbound><backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>")
	}
	// An API whose policy leaves out <base/> does not inherit the global policy.
	s.wsAPI(t, "noinherit", "noinherit", main.wsURL("/noinherit"), nil)
	s.handshakePolicy(t, "noinherit", `<policies><inbound><set-header name="X-Local" exists-action="override"><value>1</value></set-header></inbound></policies>`)

	s.put(t, "/products/gold", map[string]any{"displayName": "Gold", "subscriptionRequired": true, "state": "published"})
	s.must(t, []int{200, 201}, http.MethodPut, "/products/gold/apis/product", nil)
	s.put(t, "/products/gold/policies/policy", map[string]any{"format": "xml", "value": `<policies><inbound><base/>
		<set-header name="X-Product" exists-action="override"><value>gold</value></set-header></inbound></policies>`})

	// An open product lets calls without a key through, in the product's context.
	s.wsAPI(t, "open", "open", main.wsURL("/open"), nil)
	s.put(t, "/products/free", map[string]any{"displayName": "Free", "subscriptionRequired": false, "state": "published"})
	s.must(t, []int{200, 201}, http.MethodPut, "/products/free/apis/open", nil)
	s.put(t, "/products/free/policies/policy", map[string]any{"format": "xml", "value": `<policies><inbound><base/>
		<set-header name="X-Product" exists-action="override"><value>free</value></set-header></inbound></policies>`})
	// So does an API that does not require a subscription, without product context.
	s.wsAPI(t, "public", "public", main.wsURL("/public"), map[string]any{"subscriptionRequired": false})

	key := s.subscription(t, "all", "/apis", "active")
	rlKey := s.subscription(t, "ratelimited", "/apis/ratelimit", "active")
	quotaKey := s.subscription(t, "quota", "/apis/quota", "active")
	goldKey := s.subscription(t, "gold", "/products/gold", "active")
	productAPIKey := s.subscription(t, "product-api", "/apis/product", "active")
	gw := s.startNode(t, "gw1", nodeOptions{})

	signed := func(t *testing.T, k []byte, aud string) string {
		t.Helper()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "aud": aud, "role": "writer",
			"exp": time.Now().Add(time.Hour).Unix()}).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		otherKey := make([]byte, 32)
		_, _ = rand.Read(otherKey)
		for _, tc := range []struct {
			name       string
			url        string
			header     http.Header
			wantStatus int
			wantMsg    string
		}{
			{"ip-filter forbid", gw.ws("/ipfilter"), keyHeader(key), 403, "Caller IP address is blocked. Access denied."},
			{"ip-filter allow elsewhere", gw.ws("/allowip"), keyHeader(key), 403, "Caller IP address 127.0.0.1 is not allowed. Access denied."},
			{"check-header missing", gw.ws("/header"), keyHeader(key), 403, "Tenant not allowed"},
			{"check-header wrong value", gw.ws("/header"), http.Header{"Ocp-Apim-Subscription-Key": {key}, "X-Tenant": {"fabrikam"}}, 403, "Tenant not allowed"},
			{"no JWT", gw.ws("/jwt"), keyHeader(key), 401, "JWT not present."},
			{"no Authorization header", gw.ws("/jwtheader"), keyHeader(key), 401, "JWT not present."},
			{"JWT without a required claim", gw.ws("/jwtheader"), http.Header{"Ocp-Apim-Subscription-Key": {key},
				"Authorization": {"Bearer " + mustSign(t, jwtKey, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})}}, 401,
				"JWT token is missing the following claims: role. Access denied."},
			{"JWT with a claim value not allowed", gw.ws("/jwtheader"), http.Header{"Ocp-Apim-Subscription-Key": {key},
				"Authorization": {"Bearer " + mustSign(t, jwtKey, jwt.MapClaims{"role": "admin", "exp": time.Now().Add(time.Hour).Unix()})}}, 401,
				"Claim role value of admin is not allowed. Access denied."},
			{"invalid key on an open product's API", gw.ws("/open"), keyHeader("wrong"), 401,
				"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				status, hdr, body := handshake(t, tc.url, tc.header)
				wantGatewayError(t, status, hdr, body, tc.wantStatus, tc.wantMsg)
			})
		}
		for _, tc := range []struct{ name, token string }{
			{"JWT signed with another key", signed(t, otherKey, "chat")},
			{"JWT for another audience", signed(t, jwtKey, "billing")},
			{"not a JWT", "garbage"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				status, _, body := handshake(t, gw.ws("/jwt?access_token="+tc.token), keyHeader(key))
				if status != http.StatusUnauthorized {
					t.Errorf("status %d, want 401; body %s", status, body)
				}
			})
		}
	})

	t.Run("validate-jwt passes with a Bearer token", func(t *testing.T) {
		t.Parallel()
		tok := signed(t, jwtKey, "any")
		_, h := connect(t, gw.ws("/jwtheader"), http.Header{"Ocp-Apim-Subscription-Key": {key}, "Authorization": {"Bearer " + tok}})
		if h.Header.Get("Authorization") != "Bearer "+tok {
			t.Error("the backend did not get the Authorization header")
		}
	})

	t.Run("rate-limit-by-key", func(t *testing.T) {
		t.Parallel()
		hdr := func(client string) http.Header {
			return http.Header{"Ocp-Apim-Subscription-Key": {key}, "X-Client": {client}}
		}
		if status, _, body := handshake(t, gw.ws("/bykey"), hdr("one")); status != http.StatusSwitchingProtocols {
			t.Fatalf("first: %d %s", status, body)
		}
		status, rh, body := handshake(t, gw.ws("/bykey"), hdr("one"))
		if status != http.StatusTooManyRequests || rh.Get("Retry-After") == "" {
			t.Errorf("second call with the same counter key: %d (Retry-After %q) %s, want 429 with Retry-After", status, rh.Get("Retry-After"), body)
		}
		if status, _, body := handshake(t, gw.ws("/bykey"), hdr("two")); status != http.StatusSwitchingProtocols {
			t.Errorf("another counter key: %d %s, want 101", status, body)
		}
	})

	t.Run("choose: when branch", func(t *testing.T) {
		t.Parallel()
		// return-response without set-body answers with no body.
		if status, _, body := handshake(t, gw.ws("/choose?mode=maintenance"), keyHeader(key)); status != http.StatusServiceUnavailable || body != "" {
			t.Errorf("got %d %q, want 503 with no body", status, body)
		}
	})

	t.Run("choose: otherwise branch", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, gw.ws("/choose?mode=normal"), keyHeader(key))
		if got := h.Header.Get("X-Mode"); got != "all" {
			t.Errorf("X-Mode %q, want the subscription's name \"all\"", got)
		}
	})

	t.Run("no key needed", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ name, path, product string }{
			{"open product", "/open", "free"},
			{"API without subscription requirement", "/public", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				_, h := connect(t, gw.ws(tc.path), nil)
				if got := h.Header.Get("X-Product"); got != tc.product {
					t.Errorf("X-Product %q, want %q", got, tc.product)
				}
			})
		}
	})

	t.Run("check-header passes", func(t *testing.T) {
		t.Parallel()
		connect(t, gw.ws("/header"), http.Header{"Ocp-Apim-Subscription-Key": {key}, "X-Tenant": {"Contoso"}})
	})

	t.Run("validate-jwt passes with the token in the query", func(t *testing.T) {
		t.Parallel()
		tok := signed(t, jwtKey, "chat")
		_, h := connect(t, gw.ws("/jwt?access_token="+tok), keyHeader(key))
		if h.Query.Get("access_token") != tok {
			t.Error("the backend did not get the access_token query parameter")
		}
	})

	t.Run("rate-limit", func(t *testing.T) {
		t.Parallel()
		for i := range 2 {
			if status, _, body := handshake(t, gw.ws("/ratelimit"), keyHeader(rlKey)); status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake %d: %d %s", i+1, status, body)
			}
		}
		status, hdr, body := handshake(t, gw.ws("/ratelimit"), keyHeader(rlKey))
		// The gateway's sliding window is a two-bucket approximation, which may ask a client
		// that burst at the start of a window to wait up to 1.5 renewal periods.
		retry, err := strconv.Atoi(hdr.Get("Retry-After"))
		if err != nil || retry < 1 || retry > 90 {
			t.Errorf("Retry-After %q, want 1..90 seconds", hdr.Get("Retry-After"))
		}
		wantGatewayError(t, status, hdr, body, http.StatusTooManyRequests, "Rate limit is exceeded. Try again in "+strconv.Itoa(retry)+" seconds.")
		// Another subscription has its own counter.
		if status, _, body := handshake(t, gw.ws("/ratelimit"), keyHeader(key)); status != http.StatusSwitchingProtocols {
			t.Errorf("another subscription: %d %s", status, body)
		}
	})

	t.Run("quota", func(t *testing.T) {
		t.Parallel()
		if status, _, body := handshake(t, gw.ws("/quota"), keyHeader(quotaKey)); status != http.StatusSwitchingProtocols {
			t.Fatalf("first handshake: %d %s", status, body)
		}
		status, hdr, body := handshake(t, gw.ws("/quota"), keyHeader(quotaKey))
		if status != http.StatusForbidden {
			t.Fatalf("second handshake: %d %s, want 403", status, body)
		}
		var got gatewayError
		if err := json.Unmarshal([]byte(body), &got); err != nil || got.StatusCode != http.StatusForbidden ||
			!strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("body %q Content-Type %q, want APIM's JSON error", body, hdr.Get("Content-Type"))
		}
		if !regexp.MustCompile(`^Out of call volume quota\. Quota will be replenished in \d\d:\d\d:\d\d\.$`).MatchString(got.Message) {
			t.Errorf("message %q, want APIM's quota message", got.Message)
		}
		if hdr.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})

	t.Run("set-header and set-query-parameter", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, gw.ws("/transform?region=us&keep=1"), http.Header{"Ocp-Apim-Subscription-Key": {key}, "X-Remove-Me": {"x"}})
		got := map[string]any{"X-Injected": h.Header.Get("X-Injected"), "X-Remove-Me": h.Header.Get("X-Remove-Me"),
			"X-Global": h.Header.Get("X-Global"), "query": h.Query}
		want := map[string]any{"X-Injected": "from-policy", "X-Remove-Me": "", "X-Global": "yes",
			"query": url.Values{"region": {"eu"}, "keep": {"1"}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("backend request (-want +got):\n%s", diff)
		}
	})

	t.Run("set-backend-service", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, gw.ws("/redirect?x=1"), keyHeader(key))
		if h.Backend != "alt" || h.Path != "/alt/hub" || h.Query.Get("x") != "1" {
			t.Errorf("reached backend %q path %q query %v; want alt, /alt/hub, x=1", h.Backend, h.Path, h.Query)
		}
	})

	t.Run("return-response", func(t *testing.T) {
		t.Parallel()
		status, hdr, body := handshake(t, gw.ws("/return"), keyHeader(key))
		if status != http.StatusTeapot || body != "short and stout" || hdr.Get("X-Why") != "policy" {
			t.Errorf("got %d %q X-Why %q; want 418 \"short and stout\" X-Why policy", status, body, hdr.Get("X-Why"))
		}
	})

	t.Run("product policy only for product keys", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, key, want string
		}{
			{"product-scoped key", goldKey, "gold"},
			{"API-scoped key", productAPIKey, ""},
			{"all-APIs key", key, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				_, h := connect(t, gw.ws("/product"), keyHeader(tc.key))
				if got := h.Header.Get("X-Product"); got != tc.want {
					t.Errorf("X-Product %q, want %q", got, tc.want)
				}
				if h.Header.Get("X-Global") != "yes" {
					t.Error("the global policy did not apply through <base/>")
				}
			})
		}
	})

	t.Run("global policy only through base", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, gw.ws("/noinherit"), keyHeader(key))
		if h.Header.Get("X-Global") != "" || h.Header.Get("X-Local") != "1" {
			t.Errorf("X-Global %q X-Local %q; want only the API's own header", h.Header.Get("X-Global"), h.Header.Get("X-Local"))
		}
	})

	t.Run("frames flow after policies", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, gw.ws("/transform"), keyHeader(key))
		if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, data, err := c.ReadMessage(); err != nil || string(data) != "ping" {
			t.Errorf("echo %q, %v", data, err)
		}
	})
}

func mustSign(t *testing.T, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
