package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// The tenant and service the bad-input tests write to.
const (
	badTenant  = "00000000-0000-0000-0000-0000000000ba"
	badRG      = "rg-bad"
	badService = "svc-bad"
)

// sqlStrings are SQL-looking strings sent in every string field and as ids: they must be stored
// verbatim or refused with 400, and never reach SQL as code.
var sqlStrings = []string{`'; DROP TABLE resources; --`, `" OR 1=1 --`}

// armEnvelope is the ARM error envelope.
type armEnvelope struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Target  string `json:"target"`
	} `json:"error"`
}

// wantARMError fails unless r is an ARM error with status want, a code, a message and (when
// withTarget is set) a target.
func wantARMError(t *testing.T, r mgmttest.Response, want int, withTarget bool) {
	t.Helper()
	if r.Status >= 500 || r.Status != want {
		t.Errorf("status %d, want %d; body %s", r.Status, want, r.Body)
		return
	}
	var e armEnvelope
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == nil {
		t.Errorf("body is not an ARM error envelope: %s", r.Body)
		return
	}
	if e.Error.Code == "" || e.Error.Message == "" || withTarget && e.Error.Target == "" {
		t.Errorf("ARM error lacks code, message or target: %s", r.Body)
	}
	if got := r.Header.Get("x-ms-error-code"); got != e.Error.Code {
		t.Errorf("x-ms-error-code %q, want %q", got, e.Error.Code)
	}
}

// dbState is what a failed write must leave as it was: every service and resource row (with
// their ETags and revisions) and the number of outbox rows.
type dbState struct {
	Services  []string
	Resources []string
	Outbox    int
}

func dbStateOf(t *testing.T, env *mgmttest.Env) dbState {
	t.Helper()
	ctx := context.Background()
	var s dbState
	for _, q := range []struct {
		sql string
		dst *[]string
	}{
		{`SELECT concat_ws(' ', subscription_id, resource_group, name, etag, revision, location, sku::text, tags::text, properties::text) FROM services ORDER BY 1`, &s.Services},
		{`SELECT concat_ws(' ', service_id, kind, parent, name, etag, revision, properties::text, encode(sealed, 'hex'), key_hashes::text) FROM resources ORDER BY 1`, &s.Resources},
	} {
		rows, err := env.Pool.Query(ctx, q.sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			*q.dst = append(*q.dst, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&s.Outbox); err != nil {
		t.Fatal(err)
	}
	return s
}

// wantUnchanged fails if the database differs from before.
func wantUnchanged(t *testing.T, env *mgmttest.Env, before dbState) {
	t.Helper()
	if diff := cmp.Diff(before, dbStateOf(t, env)); diff != "" {
		t.Errorf("a refused write changed the database (-before +after):\n%s", diff)
	}
}

// kindCase is one resource kind's PUT: where a new one would go, where one already is, and a
// valid body. Bodies take a unique string u for the fields that must be unique in a service.
type kindCase struct {
	name string
	// collection is the collection path below the service; "" for the service itself.
	collection string
	// fresh and existing are item ids in collection: one that does not exist and one that
	// setup creates ("" when the kind has none).
	fresh, existing string
	// body returns a valid body; nil for links, whose body is ignored.
	body func(u string) map[string]any
	// reveal is the POST action that returns fields a GET hides (keys, secret values).
	reveal string
	// badIDs break the kind's id rules (reference/apim.md §2.2).
	badIDs []string
}

// idRuleBreakers are ids that break `^[^*#&+:<>?]+$`, the length limit max, or ARM's rules for
// every name: no control or format character, no space at either end, no backslash, not "." or
// ".." (catalog.Kind.ValidName).
func idRuleBreakers(max int) []string {
	ids := []string{strings.Repeat("a", max+1)}
	for _, c := range "*#&+:<>?" {
		ids = append(ids, "a"+string(c)+"b")
	}
	return append(ids, "a\x00b", "a\xffb", "\xef\xbf", "a\tb", "a\nb", "a\rb", "a\x7fb", " a", "a ", "a\u00a0",
		"a\\b", "\\", ".", "..", "a\u202eb", "a\u200bb", "a\u2028b")
}

var policyBody = func(string) map[string]any {
	return map[string]any{"properties": map[string]any{"format": "xml", "value": `<policies><inbound><base /><set-header name="X-Test" exists-action="override"><value>1</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`}}
}

func kindCases() []kindCase {
	policyIDs := []string{"policy2", "policies", "other", "policy ", "a\x00b"}
	return []kindCase{
		{name: "service", fresh: "svc-fresh", existing: badService,
			body: func(u string) map[string]any {
				return map[string]any{"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
					"tags": map[string]any{"env": "test"},
					"properties": map[string]any{"publisherEmail": "admin@example.com", "publisherName": "Example " + u,
						"notificationSenderEmail": "notify@example.com"}}
			},
			badIDs: []string{"1svc", "-svc", "svc-", "s_v", "s.v", "s v", "svc\x00", "svc\xff", strings.Repeat("s", 51)}},
		{name: "websocket api", collection: "/apis", fresh: "ws-fresh", existing: "wsapi",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"displayName": "Chat " + u, "description": "A chat",
					"type": "websocket", "serviceUrl": "wss://chat.example.com/ws", "path": "ws-" + u, "protocols": []any{"wss"},
					"subscriptionRequired":          true,
					"subscriptionKeyParameterNames": map[string]any{"header": "X-Key", "query": "key"},
					"contact":                       map[string]any{"name": "Ops", "email": "ops@example.com", "url": "https://example.com"}}}
			},
			badIDs: idRuleBreakers(256)},
		{name: "http api", collection: "/apis", fresh: "http-fresh", existing: "httpapi",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"displayName": "Items " + u, "type": "http",
					"serviceUrl": "https://items.example.com", "path": "http-" + u, "protocols": []any{"https"},
					"subscriptionRequired": false, "apiRevision": "1"}}
			}},
		{name: "operation", collection: "/apis/httpapi/operations", fresh: "op-fresh", existing: "op1",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"displayName": "List " + u, "method": "GET",
					"urlTemplate": "/items/{id}", "description": "Lists items",
					"templateParameters": []any{map[string]any{"name": "id", "type": "string", "required": true}},
					"request":            map[string]any{"description": "none"}, "responses": []any{}}}
			},
			badIDs: idRuleBreakers(80)},
		{name: "global policy", collection: "/policies", existing: "policy", body: policyBody, badIDs: policyIDs},
		{name: "api policy", collection: "/apis/httpapi2/policies", fresh: "policy", body: policyBody, badIDs: policyIDs},
		{name: "api policy (existing)", collection: "/apis/httpapi/policies", existing: "policy", body: policyBody},
		{name: "operation policy", collection: "/apis/httpapi/operations/op1/policies", existing: "policy", body: policyBody, badIDs: policyIDs},
		{name: "product policy", collection: "/products/prod2/policies", fresh: "policy", body: policyBody, badIDs: policyIDs},
		{name: "product", collection: "/products", fresh: "prod-fresh", existing: "prod",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"displayName": "Starter " + u, "description": "For starters",
					"terms": "Be nice", "subscriptionRequired": true, "approvalRequired": false, "subscriptionsLimit": 2,
					"state": "published"}}
			},
			badIDs: idRuleBreakers(256)},
		{name: "product api", collection: "/products/prod/apis", fresh: "httpapi2", existing: "httpapi", badIDs: idRuleBreakers(256)},
		{name: "user", collection: "/users", fresh: "user-fresh", existing: "user1",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"email": "u-" + u + "@example.com", "firstName": "Ada",
					"lastName": "Lovelace", "state": "active", "note": "a note"}}
			},
			badIDs: idRuleBreakers(80)},
		{name: "subscription", collection: "/subscriptions", fresh: "sub-fresh", existing: "sub1", reveal: "listSecrets",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"scope": "/apis/httpapi", "displayName": "Sub " + u,
					"ownerId": "/users/user1", "state": "active", "allowTracing": false,
					"primaryKey": "pk-" + u, "secondaryKey": "sk-" + u, "stateComment": "ok"}}
			},
			badIDs: idRuleBreakers(256)},
		{name: "gateway", collection: "/gateways", fresh: "gw-fresh", existing: "gw",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"description": "Edge " + u,
					"locationData": map[string]any{"name": "Amsterdam", "city": "Amsterdam", "district": "NH", "countryOrRegion": "NL"}}}
			},
			badIDs: append(idRuleBreakers(80), "managed")},
		{name: "gateway api", collection: "/gateways/gw/apis", fresh: "httpapi2", existing: "httpapi", badIDs: idRuleBreakers(256)},
		{name: "named value", collection: "/namedValues", fresh: "nv-fresh", existing: "nv1", reveal: "listValue",
			body: func(u string) map[string]any {
				return map[string]any{"properties": map[string]any{"displayName": "nv-" + u, "value": "v-" + u,
					"secret": true, "tags": []any{"a", "b"}}}
			},
			badIDs: idRuleBreakers(256)},
	}
}

func kindNamed(name string) kindCase {
	for _, k := range kindCases() {
		if k.name == name {
			return k
		}
	}
	panic("no kind " + name)
}

func (k kindCase) itemPath(svc, id string) string {
	if k.collection == "" {
		return mgmttest.ServicePath(badTenant, badRG, url.PathEscape(id))
	}
	return svc + k.collection + "/" + url.PathEscape(id)
}

// startBadInputEnv starts a service holding one resource of every kind (the kinds' existing ids)
// plus the parents the fresh ids need.
func startBadInputEnv(t *testing.T) (*mgmttest.Env, string) {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{})
	svc := mgmttest.ServicePath(badTenant, badRG, badService)
	byName := map[string]kindCase{}
	for _, k := range kindCases() {
		byName[k.name] = k
	}
	put := func(kind, path, u string) {
		var body any
		if b := byName[kind].body; b != nil {
			body = b(u)
		}
		env.Must(t, []int{201}, "PUT", path, body)
	}
	put("service", svc, "fixture")
	put("websocket api", svc+"/apis/wsapi", "wsapi")
	put("http api", svc+"/apis/httpapi", "httpapi")
	put("http api", svc+"/apis/httpapi2", "httpapi2")
	put("operation", svc+"/apis/httpapi/operations/op1", "op1")
	put("product", svc+"/products/prod", "prod")
	put("product", svc+"/products/prod2", "prod2")
	put("product api", svc+"/products/prod/apis/httpapi", "")
	put("user", svc+"/users/user1", "user1")
	put("subscription", svc+"/subscriptions/sub1", "sub1")
	put("gateway", svc+"/gateways/gw", "gw")
	put("gateway api", svc+"/gateways/gw/apis/httpapi", "")
	put("named value", svc+"/namedValues/nv1", "nv1")
	put("global policy", svc+"/policies/policy", "")
	put("api policy", svc+"/apis/httpapi/policies/policy", "")
	put("operation policy", svc+"/apis/httpapi/operations/op1/policies/policy", "")
	return env, svc
}

// jsonLeaf is one value in a JSON body and where it is.
type jsonLeaf struct {
	path  []string
	value any
}

// jsonLeaves lists every value below the root of body, objects and arrays included, in a stable order.
func jsonLeaves(body map[string]any) []jsonLeaf {
	var out []jsonLeaf
	var walk func(prefix []string, v any)
	walk = func(prefix []string, v any) {
		if len(prefix) > 0 {
			out = append(out, jsonLeaf{path: slices.Clone(prefix), value: v})
		}
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(append(prefix, k), v[k])
			}
		case []any:
			for i, e := range v {
				walk(append(prefix, fmt.Sprint(i)), e)
			}
		}
	}
	walk(nil, body)
	return out
}

// withValue returns a deep copy of body with the value at path replaced by v.
func withValue(body map[string]any, path []string, v any) map[string]any {
	raw, _ := json.Marshal(body)
	var cp map[string]any
	_ = json.Unmarshal(raw, &cp)
	var cur any = cp
	for i, p := range path {
		last := i == len(path)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[p] = v
			}
			cur = c[p]
		case []any:
			var n int
			fmt.Sscan(p, &n)
			if last {
				c[n] = v
			}
			cur = c[n]
		}
	}
	return cp
}

// lookupPath returns the value at path in body.
func lookupPath(body any, path []string) (any, bool) {
	cur := body
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// wrongJSONType returns a value of another JSON type than v.
func wrongJSONType(v any) any {
	switch v.(type) {
	case string:
		return 42
	case bool:
		return "yes"
	case float64, int:
		return "many"
	case []any:
		return "a string, not a list"
	}
	return []any{"a list, not an object"}
}

// hugeJSONBody is a syntactically valid JSON body over the 4 MiB limit.
func hugeJSONBody() []byte {
	return []byte(`{"properties":{"displayName":"` + strings.Repeat("x", 5<<20) + `"}}`)
}

// chunkedReader hides a body's length, so the request goes out chunked and the limit must hold
// while the body is read.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// sendRaw sends a request exactly as given (no api-version added) with the Env's token.
func sendRaw(t *testing.T, env *mgmttest.Env, method, pathAndQuery string, body io.Reader) mgmttest.Response {
	t.Helper()
	req, err := http.NewRequest(method, env.URL+pathAndQuery, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+env.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := env.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return mgmttest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

type badBody struct {
	name   string
	body   any
	status int
}

// badBodies are the bodies every kind's PUT must refuse.
func badBodies(k kindCase) []badBody {
	out := []badBody{
		{"malformed JSON", `{"properties": {"displayName": "x",}`, 400},
		{"truncated JSON", `{"properties":`, 400},
		{"JSON array", `[{"properties":{}}]`, 400},
		{"JSON string", `"properties"`, 400},
		{"JSON null", `null`, 400},
		{"two JSON values", `{"properties":{}} {"properties":{}}`, 400},
		{"properties a string", `{"properties":"displayName"}`, 400},
		{"properties a number", `{"properties":1}`, 400},
		{"properties an array", `{"properties":[{}]}`, 400},
		{"body over 4 MiB", hugeJSONBody(), 413},
	}
	if k.body == nil {
		return out
	}
	valid := k.body("bad")
	out = append(out, badBody{"empty body", "", 400})
	for _, l := range jsonLeaves(valid) {
		name := strings.Join(l.path, ".")
		out = append(out, badBody{name + " of the wrong type", withValue(valid, l.path, wrongJSONType(l.value)), 400})
		if _, ok := l.value.(string); ok {
			// Postgres cannot store U+0000 in jsonb or text.
			out = append(out, badBody{name + " with a NUL character", withValue(valid, l.path, "a\x00b"), 400})
		}
	}
	return out
}

func TestBadInputBodies(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	for _, k := range kindCases() {
		for _, target := range []struct{ which, id string }{{"new", k.fresh}, {"existing", k.existing}} {
			if target.id == "" {
				continue
			}
			path := k.itemPath(svc, target.id)
			for _, bb := range badBodies(k) {
				t.Run(k.name+"/"+target.which+"/"+bb.name, func(t *testing.T) {
					before := dbStateOf(t, env)
					r := env.Do(t, "PUT", path, bb.body)
					wantARMError(t, r, bb.status, true)
					wantUnchanged(t, env, before)
				})
			}
		}
		if k.fresh != "" {
			t.Run(k.name+"/new/chunked body over 4 MiB", func(t *testing.T) {
				before := dbStateOf(t, env)
				r := sendRaw(t, env, "PUT", k.itemPath(svc, k.fresh)+"?api-version="+mgmttest.APIVersion, chunkedReader{bytes.NewReader(hugeJSONBody())})
				wantARMError(t, r, 413, true)
				wantUnchanged(t, env, before)
			})
		}
	}
	// Nothing of a fresh resource may be readable after all those refusals.
	for _, k := range kindCases() {
		if k.fresh != "" {
			if r := env.Do(t, "GET", k.itemPath(svc, k.fresh), nil); r.Status != 404 {
				t.Errorf("GET %s after refused PUTs: status %d, want 404; body %s", k.fresh, r.Status, r.Body)
			}
		}
	}
}

func TestBadInputPatch(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	for _, k := range kindCases() {
		if k.body == nil || k.existing == "" {
			continue
		}
		path := k.itemPath(svc, k.existing)
		cases := []badBody{
			{"malformed JSON", `{"properties": {`, 400},
			{"JSON array", `[]`, 400},
			{"properties a string", `{"properties":"x"}`, 400},
			{"body over 4 MiB", hugeJSONBody(), 413},
		}
		for _, l := range jsonLeaves(k.body("patch")) {
			if l.path[0] == "properties" && len(l.path) == 2 {
				cases = append(cases, badBody{strings.Join(l.path, ".") + " of the wrong type",
					map[string]any{"properties": map[string]any{l.path[1]: wrongJSONType(l.value)}}, 400})
			}
		}
		for _, bb := range cases {
			t.Run(k.name+"/"+bb.name, func(t *testing.T) {
				before := dbStateOf(t, env)
				r := env.Do(t, "PATCH", path, bb.body, "If-Match", "*")
				wantARMError(t, r, bb.status, true)
				wantUnchanged(t, env, before)
			})
		}
	}
}

func TestBadInputIDs(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	for _, k := range kindCases() {
		var body any
		if k.body != nil {
			body = k.body("badid")
		}
		for _, id := range k.badIDs {
			t.Run(fmt.Sprintf("%s/%.40q", k.name, id), func(t *testing.T) {
				before := dbStateOf(t, env)
				wantARMError(t, env.Do(t, "PUT", k.itemPath(svc, id), body), 400, true)
				wantUnchanged(t, env, before)
				if r := env.Do(t, "GET", k.itemPath(svc, id), nil); r.Status != 400 && r.Status != 404 {
					t.Errorf("GET: status %d, want 400 or 404; body %s", r.Status, r.Body)
				}
			})
		}
	}
	t.Run("user operation on a websocket api", func(t *testing.T) {
		before := dbStateOf(t, env)
		r := env.Do(t, "PUT", svc+"/apis/wsapi/operations/send", kindNamed("operation").body("ws"))
		wantARMError(t, r, 400, true)
		wantUnchanged(t, env, before)
	})
	t.Run("websocket api on a taken path", func(t *testing.T) {
		before := dbStateOf(t, env)
		body := kindNamed("websocket api").body("wsapi") // the path of wsapi
		wantARMError(t, env.Do(t, "PUT", svc+"/apis/ws-taken", body), 400, true)
		wantUnchanged(t, env, before)
		if r := env.Do(t, "GET", svc+"/apis/ws-taken/operations/onHandshake", nil); r.Status != 404 {
			t.Errorf("onHandshake of a refused API: status %d, want 404", r.Status)
		}
	})
	for _, tc := range []struct{ name, path string }{
		{"NUL in resource group", mgmttest.ServicePath(badTenant, "rg\x00", badService)},
		{"NUL in tenant", mgmttest.ServicePath("t\x00", badRG, badService)},
		{"bad UTF-8 in resource group", mgmttest.ServicePath(badTenant, "rg\xff", badService)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := strings.NewReplacer("\x00", "%00", "\xff", "%FF").Replace(tc.path)
			before := dbStateOf(t, env)
			wantARMError(t, env.Do(t, "PUT", p, kindNamed("service").body("x")), 400, true)
			wantUnchanged(t, env, before)
			if r := env.Do(t, "GET", p, nil); r.Status >= 500 {
				t.Errorf("GET: status %d; body %s", r.Status, r.Body)
			}
		})
	}
}

// wantStored checks that the value sent at path reads back verbatim, through GET or, for secrets,
// the kind's reveal action.
func wantStored(t *testing.T, env *mgmttest.Env, k kindCase, path string, field []string, want string) {
	t.Helper()
	var got any
	if err := json.Unmarshal(env.Must(t, []int{200}, "GET", path, nil).Body, &got); err != nil {
		t.Fatal(err)
	}
	v, ok := lookupPath(got, field)
	if !ok && k.reveal != "" {
		var secrets any
		_ = json.Unmarshal(env.Must(t, []int{200}, "POST", path+"/"+k.reveal, nil).Body, &secrets)
		v, ok = lookupPath(secrets, field[len(field)-1:])
	}
	if !ok || v != want {
		t.Errorf("%s accepted but reads back as %#v (found %v), want %q", strings.Join(field, "."), v, ok, want)
	}
}

func TestBadInputSQLStrings(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	n := 0
	for _, k := range kindCases() {
		if k.body == nil || k.fresh == "" {
			continue
		}
		path := k.itemPath(svc, k.fresh)
		for _, l := range jsonLeaves(k.body("")) {
			if _, ok := l.value.(string); !ok {
				continue
			}
			for _, s := range sqlStrings {
				n++
				body := withValue(k.body(fmt.Sprint(n)), l.path, s)
				t.Run(fmt.Sprintf("%s/%s=%s", k.name, strings.Join(l.path, "."), s), func(t *testing.T) {
					before := dbStateOf(t, env)
					r := env.Do(t, "PUT", path, body)
					switch {
					case r.Status == 201:
						wantStored(t, env, k, path, l.path, s)
						env.Must(t, []int{200, 204}, "DELETE", path, nil, "If-Match", "*")
					case r.Status == 400:
						wantARMError(t, r, 400, true)
						wantUnchanged(t, env, before)
					default:
						t.Fatalf("status %d, want 201 or 400; body %s", r.Status, r.Body)
					}
				})
			}
		}
	}
	for _, k := range kindCases() {
		if k.collection == "" || k.fresh == "" || strings.HasSuffix(k.collection, "/policies") {
			continue
		}
		for _, s := range sqlStrings {
			n++
			t.Run(fmt.Sprintf("%s/id=%s", k.name, s), func(t *testing.T) {
				var body any
				if k.body != nil {
					body = k.body(fmt.Sprint(n))
				}
				if strings.Contains(s, ";") && strings.HasSuffix(k.collection, "/apis") {
					// In an API id ';' introduces a revision ("chat;rev=2") and nothing else.
					wantARMError(t, env.Do(t, "PUT", svc+"/apis/"+url.PathEscape(s), kindNamed("http api").body(fmt.Sprint(n))), 400, true)
					return
				}
				if k.body == nil {
					// A link's id names an API: make one with that id first.
					env.Must(t, []int{201}, "PUT", svc+"/apis/"+url.PathEscape(s), kindNamed("http api").body(fmt.Sprint(n)))
				}
				path := k.itemPath(svc, s)
				env.Must(t, []int{201}, "PUT", path, body)
				if k.body == nil {
					env.Must(t, []int{200, 204}, "HEAD", path, nil) // links answer HEAD, not GET
				} else {
					var got struct{ Name string }
					if err := json.Unmarshal(env.Must(t, []int{200}, "GET", path, nil).Body, &got); err != nil {
						t.Fatal(err)
					}
					if got.Name != s {
						t.Errorf("GET: name %q, want %q", got.Name, s)
					}
				}
				filter := "name eq '" + strings.ReplaceAll(s, "'", "''") + "'"
				var page struct {
					Value []struct{ Name string } `json:"value"`
				}
				if err := json.Unmarshal(env.Must(t, []int{200}, "GET", svc+k.collection+"?$filter="+url.QueryEscape(filter), nil).Body, &page); err != nil {
					t.Fatal(err)
				}
				if len(page.Value) != 1 || page.Value[0].Name != s {
					t.Errorf("list with $filter %s = %+v, want just %q", filter, page.Value, s)
				}
				if k.body == nil {
					env.Must(t, []int{200, 204}, "DELETE", svc+"/apis/"+url.PathEscape(s), nil, "If-Match", "*")
				} else {
					env.Must(t, []int{200, 204}, "DELETE", path, nil, "If-Match", "*")
				}
			})
		}
	}
	// The tables are still there, and so is every fixture.
	var count int
	if err := env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM resources`).Scan(&count); err != nil || count == 0 {
		t.Fatalf("resources table: %d rows, %v", count, err)
	}
	for _, k := range kindCases() {
		if k.existing != "" {
			env.Must(t, []int{200, 204}, "HEAD", k.itemPath(svc, k.existing), nil)
		}
	}
}

func TestBadInputQuery(t *testing.T) {
	t.Parallel()
	env, svc := startBadInputEnv(t)
	lists := []string{svc + "/apis", svc + "/products", svc + "/subscriptions", svc + "/users", svc + "/gateways",
		svc + "/namedValues", svc + "/apis/httpapi/operations", svc + "/products/prod/apis",
		"/subscriptions/" + badTenant + "/providers/Microsoft.ApiManagement/service"}
	type query struct{ name, raw, target string }
	var queries []query
	for _, v := range []string{"0", "-1", "abc", "1.5", "99999999999999999999", "1e3", "%00"} {
		queries = append(queries, query{"$top=" + v, "$top=" + v, "$top"})
	}
	for _, v := range []string{"-1", "abc", "99999999999999999999"} {
		queries = append(queries, query{"$skip=" + v, "$skip=" + v, "$skip"})
	}
	for _, f := range []string{
		"name eq", "eq 'x'", "name eq 'x", "name eq x", "name eq 'x' and", "(name eq 'x'", "name eq 'x')",
		"unknownField eq 'x'", "name gt", "startswith(name)", "startswith(name, 1)", "contains(1, 'x')",
		"name eq 'x' or 1 eq 1", "name eq 'x'; DROP TABLE resources; --", "name eq '' OR 1=1 --'",
		"name eq 'a\x00b'", "name eq 'a\xffb'", strings.Repeat("(", 40) + "name eq 'x'" + strings.Repeat(")", 40),
		strings.Repeat("not ", 40) + "name eq 'x'", "name eq '" + strings.Repeat("x", 3000) + "'",
		"name eq 'x' and not", "displayName in ('a', 'b')", "name/first eq 'x'", "name eq @p1",
	} {
		queries = append(queries, query{"$filter=" + fmt.Sprintf("%.40q", f), "$filter=" + url.QueryEscape(f), "$filter"})
	}
	for _, list := range lists {
		for _, q := range queries {
			t.Run(strings.TrimPrefix(list, svc)+"/"+q.name, func(t *testing.T) {
				r := env.Do(t, "GET", list+"?"+q.raw, nil)
				wantARMError(t, r, 400, true)
				if e := (armEnvelope{}); json.Unmarshal(r.Body, &e) == nil && e.Error != nil && e.Error.Target != q.target {
					t.Errorf("target %q, want %q", e.Error.Target, q.target)
				}
			})
		}
	}
	t.Run("typed filter on a bool field", func(t *testing.T) {
		wantARMError(t, env.Do(t, "GET", svc+"/apis?$filter="+url.QueryEscape("isCurrent gt true"), nil), 400, true)
	})
	t.Run("SQL in a filter string is data", func(t *testing.T) {
		for _, s := range sqlStrings {
			f := "name eq '" + strings.ReplaceAll(s, "'", "''") + "' or displayName eq '" + strings.ReplaceAll(s, "'", "''") + "'"
			var page struct {
				Value []any `json:"value"`
			}
			if err := json.Unmarshal(env.Must(t, []int{200}, "GET", svc+"/apis?$filter="+url.QueryEscape(f), nil).Body, &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Value) != 0 {
				t.Errorf("$filter %s matched %d APIs, want 0", f, len(page.Value))
			}
		}
		env.Must(t, []int{200}, "GET", svc+"/apis/httpapi", nil)
	})
	for _, tc := range []struct{ name, query, target string }{
		{"unknown api-version", "api-version=2099-01-01", "api-version"},
		{"empty api-version", "api-version=", "api-version"},
		{"SQL api-version", "api-version=" + url.QueryEscape(sqlStrings[0]), "api-version"},
		{"no api-version", "", "api-version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dbStateOf(t, env)
			raw, _ := json.Marshal(kindNamed("http api").body("v"))
			for _, m := range []string{"GET", "PUT"} {
				r := sendRaw(t, env, m, svc+"/apis/httpapi?"+tc.query, bytes.NewReader(raw))
				wantARMError(t, r, 400, true)
			}
			wantUnchanged(t, env, before)
		})
	}
}
