package api_test

import (
	"strings"
	"testing"

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
