package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"gatehouse.dev/management/internal/app"
	"gatehouse.dev/management/internal/mgmttest"
)

// TestAttackNamesPercentEncoded sends names that break ARM's rules percent-encoded, as an
// attacker gets them past clients and proxies that clean or refuse the plain form ("/apis/.."
// resolves to the collection; "%2E%2E" arrives as the name "..").
func TestAttackNamesPercentEncoded(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	api := kindNamed("http api")
	for _, raw := range []string{"%2E", "%2E%2E", "%2e%2e", ".%2E", "a%09b", "a%0Ab", "a%0Db", "%20a", "a%20", "a%5Cb",
		"%5C", "a%E2%80%AEb", "a%C2%85b"} {
		t.Run(raw, func(t *testing.T) {
			before := dbStateOf(t, env)
			for _, path := range []string{svc + "/apis/" + raw, svc + "/products/" + raw, svc + "/gateways/" + raw,
				svc + "/namedValues/" + raw, svc + "/products/prod/apis/" + raw} {
				body := map[string]any{"properties": map[string]any{}}
				switch {
				case strings.Contains(path, "/products/prod/apis/"):
					body = nil
				case strings.Contains(path, "/apis/"):
					body = api.body("pct")
				case strings.Contains(path, "/products/"):
					body = kindNamed("product").body("pct")
				case strings.Contains(path, "/gateways/"):
					body = kindNamed("gateway").body("pct")
				case strings.Contains(path, "/namedValues/"):
					body = kindNamed("named value").body("pct")
				}
				var r mgmttest.Response
				if body == nil {
					r = env.Do(t, "PUT", path, nil)
				} else {
					r = env.Do(t, "PUT", path, body)
				}
				wantARMError(t, r, 400, true)
				wantCode(t, r, "ValidationError")
			}
			wantUnchanged(t, env, before)
		})
	}
}

// TestAttackContentType checks that a body is read only as JSON: ARM answers 415 to any other
// media type, so a form post or a text body never reaches the JSON decoder.
func TestAttackContentType(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	path := svc + "/apis/httpapi"
	body := kindNamed("http api").body("ct")
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/xml", "application/json; charset=latin1", "application/jsonx", "text/json", "json", "application/json;;"} {
		t.Run("refused "+ct, func(t *testing.T) {
			before := dbStateOf(t, env)
			for _, m := range []string{"PUT", "PATCH"} {
				r := env.Do(t, m, path, body, "Content-Type", ct, "If-Match", "*")
				wantARMError(t, r, 415, true)
				wantCode(t, r, "UnsupportedMediaType")
			}
			r := env.Do(t, "POST", svc+"/subscriptions/sub1/listSecrets", `{}`, "Content-Type", ct)
			wantARMError(t, r, 415, true)
			wantUnchanged(t, env, before)
		})
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8",
		"application/merge-patch+json"} {
		t.Run("accepted "+ct, func(t *testing.T) {
			env.Must(t, []int{200}, "PUT", path, body, "Content-Type", ct)
			env.Must(t, []int{200}, "PATCH", path, map[string]any{"properties": map[string]any{"description": "d"}},
				"Content-Type", ct, "If-Match", "*")
		})
	}
	t.Run("no body needs no Content-Type", func(t *testing.T) {
		env.Must(t, []int{200}, "POST", svc+"/subscriptions/sub1/listSecrets", nil, "Content-Type", "")
		env.Must(t, []int{200}, "POST", svc+"/subscriptions/sub1/listSecrets", "", "Content-Type", "text/plain")
		env.Must(t, []int{200, 201}, "PUT", svc+"/products/prod/apis/httpapi", nil, "Content-Type", "")
	})
}

// TestAttackIfNoneMatch checks that If-None-Match: * creates only: on an existing resource it
// answers 412 and leaves it as it was, instead of overwriting it.
func TestAttackIfNoneMatch(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	etag := env.Must(t, []int{200}, "GET", svc+"/apis/httpapi", nil).Header.Get("ETag")
	for _, tc := range []struct{ name, path, value string }{
		{"api, *", svc + "/apis/httpapi", "*"},
		{"api, its ETag", svc + "/apis/httpapi", etag},
		{"service, *", svc, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dbStateOf(t, env)
			body := kindNamed("http api").body("inm")
			if tc.path == svc {
				body = kindNamed("service").body("inm")
			}
			r := env.Do(t, "PUT", tc.path, body, "If-None-Match", tc.value)
			wantARMError(t, r, 412, true)
			wantCode(t, r, "PreconditionFailed")
			wantUnchanged(t, env, before)
		})
	}
	t.Run("creates a new one", func(t *testing.T) {
		env.Must(t, []int{201}, "PUT", svc+"/apis/inm-fresh", kindNamed("http api").body("inm-fresh"), "If-None-Match", "*")
	})
	t.Run("another ETag does not stop a write", func(t *testing.T) {
		env.Must(t, []int{200}, "PUT", svc+"/apis/httpapi", kindNamed("http api").body("httpapi"), "If-None-Match", `"other"`)
	})
}

// TestAttackInvalidUTF8 checks that a body with bytes that are not UTF-8, anywhere in its JSON,
// is refused with 400 rather than stored with U+FFFD in their place.
func TestAttackInvalidUTF8(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	for _, tc := range []struct{ name, body string }{
		{"in a value", `{"properties":{"displayName":"Items \xff","path":"utf","serviceUrl":"https://items.example.com","protocols":["https"]}}`},
		{"in a nested value", `{"properties":{"displayName":"Items","path":"utf","protocols":["https\xc3"]}}`},
		{"in a key", `{"properties":{"display\xfeName":"Items","path":"utf"}}`},
		{"overlong encoding", `{"properties":{"displayName":"\xc0\xafetc","path":"utf"}}`},
		{"surrogate half", `{"properties":{"displayName":"\xed\xa0\x80","path":"utf"}}`},
		{"outside the strings", "{\"properties\":{\"displayName\":\"Items\",\"path\":\"utf\"}}\xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dbStateOf(t, env)
			for _, m := range []string{"PUT", "PATCH"} {
				r := env.Do(t, m, svc+"/apis/httpapi", tc.body, "If-Match", "*")
				wantARMError(t, r, 400, true)
				wantCode(t, r, "InvalidRequestContent")
			}
			wantUnchanged(t, env, before)
		})
	}
}

// TestAttackServiceURLEgress checks that management refuses, when written, a serviceUrl its
// egress policy denies, naming the rule: the cloud metadata address in any spelling, the
// gateway node's default admin and traffic listeners on loopback, and the operator's own rules.
func TestAttackServiceURLEgress(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{EgressDeny: app.DefaultEgressDeny + ",*.corp.internal,10.0.0.0/8"})
	svc := mgmttest.ServicePath(badTenant, badRG, "svc-egress")
	env.Must(t, []int{201}, "PUT", svc, kindNamed("service").body("egress"))
	api := func(url string) map[string]any {
		return map[string]any{"properties": map[string]any{"displayName": "E", "type": "websocket", "serviceUrl": url,
			"path": "e", "protocols": []any{"wss"}}}
	}
	for _, tc := range []struct{ url, rule string }{
		{"ws://169.254.169.254/latest/meta-data", "169.254.0.0/16"},
		{"ws://[::ffff:169.254.169.254]/", "169.254.0.0/16"},
		{"ws://[fe80::1]:8080/", "fe80::/10"},
		{"ws://127.0.0.1:9091/metrics", "127.0.0.0/8:9091"},
		{"ws://localhost:9091/", "127.0.0.0/8:9091"},
		{"ws://0.0.0.0:8081/", "127.0.0.0/8:8081"},
		{"ws://[::1]:9091/", "[::1]:9091"},
		{"ws://2130706433:9091/", ""},
		{"wss://vault.corp.internal/", "*.corp.internal"},
		{"wss://10.1.2.3/", "10.0.0.0/8"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			before := dbStateOf(t, env)
			r := env.Do(t, "PUT", svc+"/apis/egress", api(tc.url))
			wantARMError(t, r, 400, true)
			wantCode(t, r, "ValidationError")
			if !strings.Contains(string(r.Body), "serviceUrl") || !strings.Contains(string(r.Body), tc.rule) {
				t.Errorf("the refusal does not name serviceUrl and rule %q: %s", tc.rule, r.Body)
			}
			wantUnchanged(t, env, before)
		})
	}
	t.Run("allowed: loopback on another port, a public name", func(t *testing.T) {
		env.Must(t, []int{201}, "PUT", svc+"/apis/egress", api("ws://127.0.0.1:9000/ws"))
		env.Must(t, []int{200}, "PUT", svc+"/apis/egress", api("wss://chat.example.com/ws"))
		r := env.Do(t, "PATCH", svc+"/apis/egress", map[string]any{"properties": map[string]any{"serviceUrl": "ws://169.254.169.254/"}}, "If-Match", "*")
		wantARMError(t, r, 400, true)
	})
}

// TestAttackPolicyURLEgress checks that management refuses, when written, a policy that would
// fetch from an address its egress policy denies (validate-jwt's openid-config), written
// literally or through a named value, and a named value change that would make a stored
// policy do so, naming the rule; a public identity provider stays allowed.
func TestAttackPolicyURLEgress(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{EgressDeny: app.DefaultEgressDeny + ",*.corp.internal"})
	svc := mgmttest.ServicePath(badTenant, badRG, "svc-fetch-egress")
	env.Must(t, []int{201}, "PUT", svc, kindNamed("service").body("fetch-egress"))
	policy := func(url string) map[string]any {
		return map[string]any{"properties": map[string]any{"format": "xml", "value": `<policies><inbound><validate-jwt header-name="Authorization">` +
			`<openid-config url="` + url + `"/></validate-jwt></inbound></policies>`}}
	}
	namedValue := func(value string) map[string]any {
		return map[string]any{"properties": map[string]any{"displayName": "idp", "value": value}}
	}
	wantRefused := func(t *testing.T, r mgmttest.Response, rule string) {
		t.Helper()
		wantARMError(t, r, 400, true)
		wantCode(t, r, "ValidationError")
		if !strings.Contains(string(r.Body), "openid-config") || !strings.Contains(string(r.Body), "egress policy") ||
			!strings.Contains(string(r.Body), rule) {
			t.Errorf("the refusal does not name openid-config, the egress policy and rule %q: %s", rule, r.Body)
		}
	}
	for _, tc := range []struct{ url, rule string }{
		{"http://169.254.169.254/latest/meta-data/iam", "169.254.0.0/16"},
		{"http://[2002:a9fe:a9fe::1]/", "169.254.0.0/16"},
		{"http://localhost:9091/metrics", "127.0.0.0/8:9091"},
		{"https://idp.corp.internal/.well-known/openid-configuration", "*.corp.internal"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			before := dbStateOf(t, env)
			wantRefused(t, env.Do(t, "PUT", svc+"/policies/policy", policy(tc.url)), tc.rule)
			wantUnchanged(t, env, before)
		})
	}
	t.Run("through a named value", func(t *testing.T) {
		env.Must(t, []int{201}, "PUT", svc+"/namedValues/idp", namedValue("http://169.254.169.254/"))
		wantRefused(t, env.Do(t, "PUT", svc+"/policies/policy", policy("{{idp}}")), "169.254.0.0/16")
		env.Must(t, []int{200}, "PUT", svc+"/namedValues/idp", namedValue("https://login.example.com/.well-known/openid-configuration"))
		env.Must(t, []int{201}, "PUT", svc+"/policies/policy", policy("{{idp}}"))
		before := dbStateOf(t, env)
		wantRefused(t, env.Do(t, "PUT", svc+"/namedValues/idp", namedValue("http://localhost:9091/metrics")), "127.0.0.0/8:9091")
		wantUnchanged(t, env, before)
	})
}

// TestAttackMetricsOffTheAPIListener checks that /metrics is served on the admin listener only:
// on the API's listener it is an unknown route (401 without a token, 404 with one).
func TestAttackMetricsOffTheAPIListener(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {env.Token, http.StatusNotFound}} {
		req, _ := http.NewRequest("GET", env.URL+"/metrics?api-version="+mgmttest.APIVersion, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := env.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || strings.Contains(string(body), "gatehouse_management_") {
			t.Errorf("GET /metrics on the API listener (token %v): %d %.200s, want %d", tc.token != "", resp.StatusCode, body, tc.want)
		}
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, err := http.Get(env.AdminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || path == "/metrics" && !strings.Contains(string(body), "gatehouse_management_") {
			t.Errorf("GET %s on the admin listener: %d %.200s", path, resp.StatusCode, body)
		}
	}
}
