package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// tenantFragment checks X-Tenant against the named value tenant.
const tenantFragment = `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="no tenant" ignore-case="true"><value>{{tenant}}</value></check-header></fragment>`

// fragmentDoc is the ARM body of a fragment.
func fragmentDoc(value, format, description string) map[string]any {
	p := map[string]any{"value": value}
	if format != "" {
		p["format"] = format
	}
	if description != "" {
		p["description"] = description
	}
	return map[string]any{"properties": p}
}

// includeDoc is an onHandshake policy including the fragment id.
func includeDoc(id string) map[string]any {
	return policyDoc(`<policies><inbound><base /><include-fragment fragment-id="`+id+`" /></inbound></policies>`, "xml")
}

func TestPolicyFragments(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	setup := func(t *testing.T, name string) svcClient {
		c := newSvcClient(t, env, name)
		c.put("/apis/chat", wsAPI("chat"))
		c.put("/apis/rest", httpAPI("rest"))
		c.put("/namedValues/tenant", map[string]any{"displayName": "tenant", "value": "contoso"})
		return c
	}

	t.Run("formats", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "frag-formats")
		raw := `<fragment><set-header name="X-Api" exists-action="override"><value>@(context.Api.Name + "<")</value></set-header></fragment>`
		put := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/policyFragments/stamp", fragmentDoc(raw, "rawxml", "stamps")))
		if put["provisioningState"] != "Succeeded" || put["value"] != raw || put["description"] != "stamps" {
			t.Errorf("PUT properties %v, want the value as written, its description and provisioningState Succeeded", put)
		}
		xml := armProps(t, c.must(http.StatusOK, http.MethodGet, "/policyFragments/stamp", nil))
		want := "<set-header name=\"X-Api\" exists-action=\"override\">\n\t<value>@(context.Api.Name + \"&lt;\")</value>\n</set-header>\n"
		if xml["format"] != "xml" || xml["value"] != want {
			t.Errorf("GET (xml) = %q %v, want the policies without <fragment>, escaped: %q", xml["value"], xml["format"], want)
		}
		if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/policyFragments/stamp?format=rawxml", nil)); got["value"] != raw {
			t.Errorf("GET (rawxml) = %q, want the fragment as written", got["value"])
		}
		// What GET gives in xml goes back in with PUT, and a fragment written in xml reads back as written.
		c.must(http.StatusOK, http.MethodPut, "/policyFragments/stamp", fragmentDoc(want, "xml", ""))
		written := "<fragment>\n  <rate-limit calls=\"5\" renewal-period=\"60\" />\n</fragment>"
		c.must(http.StatusOK, http.MethodPut, "/policyFragments/stamp", fragmentDoc(written, "", ""))
		if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/policyFragments/stamp?format=xml", nil)); got["value"] != "\n  <rate-limit calls=\"5\" renewal-period=\"60\" />\n" {
			t.Errorf("GET (xml) of a fragment written in xml = %q, want its content as written", got["value"])
		}
		c.must(http.StatusOK, http.MethodHead, "/policyFragments/stamp", nil)
		wantError(t, c.do(http.MethodGet, "/policyFragments/stamp?format=json", nil), http.StatusBadRequest, "ValidationError", "format", "xml or rawxml")
	})

	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "frag-validation")
		for _, tc := range []struct {
			name, value, format, description, target, msg string
		}{
			{"no value", "", "", "", "properties.value", "value is required"},
			{"bad format", tenantFragment, "xml-link", "", "properties.format", "xml or rawxml"},
			{"section", `<fragment><inbound /></fragment>`, "", "", "representation", "must not contain a section element"},
			{"base", `<fragment><base /></fragment>`, "", "", "representation", "must not contain the base element"},
			{"nested fragment", `<fragment><include-fragment fragment-id="x" /></fragment>`, "", "", "representation", "cannot include another policy fragment"},
			{"not XML", `<fragment><rate-limit></fragment>`, "", "", "representation", "Line 1"},
			{"too large", "<fragment><set-header name=\"X\" exists-action=\"override\"><value>" + strings.Repeat("a", 33<<10) + "</value></set-header></fragment>", "", "", "representation", "32768 bytes"},
			{"long description", tenantFragment, "", strings.Repeat("d", 1001), "properties.description", "at most 1000"},
			{"missing named value", `<fragment><set-header name="X" exists-action="override"><value>{{nope}}</value></set-header></fragment>`, "", "", "representation", "Cannot find a property 'nope'"},
			{"expression that does not compile", `<fragment><set-header name="X" exists-action="override"><value>@(context.Nope)</value></set-header></fragment>`, "", "", "representation", "Error in element 'set-header' on line 1"},
		} {
			r := c.do(http.MethodPut, "/policyFragments/bad", fragmentDoc(tc.value, tc.format, tc.description))
			wantError(t, r, http.StatusBadRequest, "ValidationError", tc.target, tc.msg)
		}
		wantError(t, c.do(http.MethodPut, "/policyFragments/-bad", fragmentDoc(tenantFragment, "", "")), http.StatusBadRequest, "ValidationError", "name", "")
		c.must(http.StatusNotFound, http.MethodGet, "/policyFragments/bad", nil)
		// APIM's spec has no PATCH for fragments.
		c.must(http.StatusNotFound, http.MethodPatch, "/policyFragments/bad", fragmentDoc(tenantFragment, "", ""), "If-Match", "*")
	})

	t.Run("include", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "frag-include")
		op := "/apis/chat/operations/onHandshake/policies/policy"
		wantError(t, c.do(http.MethodPut, op, includeDoc("tenant-check")), http.StatusBadRequest, "ValidationError", "include-fragment",
			"Error in element 'include-fragment' on line 1, column 28: Policy fragment with id 'tenant-check' could not be found.")
		outbound := policyDoc(`<policies><inbound><base /></inbound><outbound><include-fragment fragment-id="nope" /></outbound></policies>`, "xml")
		wantError(t, c.do(http.MethodPut, "/apis/rest/policies/policy", outbound), http.StatusBadRequest, "ValidationError", "include-fragment",
			"Policy fragment with id 'nope' could not be found.")
		c.must(http.StatusCreated, http.MethodPut, "/policyFragments/tenant-check", fragmentDoc(tenantFragment, "", ""))
		c.must(http.StatusCreated, http.MethodPut, op, includeDoc("TENANT-check"))
		c.must(http.StatusCreated, http.MethodPut, "/policies/policy", includeDoc("tenant-check"))
		c.must(http.StatusCreated, http.MethodPut, "/policyFragments/cors", fragmentDoc(`<fragment><cors><allowed-origins><origin>*</origin></allowed-origins></cors></fragment>`, "", ""))
		wantError(t, c.do(http.MethodPut, op, includeDoc("cors")), http.StatusBadRequest, "ValidationError", "representation", "not supported on a WebSocket API's onHandshake operation")
		c.must(http.StatusCreated, http.MethodPut, "/apis/rest/policies/policy", includeDoc("cors"))

		// listReferences pages through the policies including a fragment.
		refs := decodeList(t, c.must(http.StatusOK, http.MethodPost, "/policyFragments/tenant-check/listReferences", nil))
		var ids []string
		for _, v := range refs.Value {
			ids = append(ids, v["id"].(string))
			if v["name"] != "policy" || !strings.HasPrefix(v["type"].(string), "Microsoft.ApiManagement/service/") {
				t.Errorf("reference %v, want name policy and an ARM policy type", v)
			}
		}
		if diff := cmp.Diff([]string{c.id("/policies/policy"), c.id("/apis/chat/operations/onHandshake/policies/policy")}, ids); diff != "" || refs.Count == nil || *refs.Count != 2 {
			t.Errorf("listReferences ids (-want +got):\n%s count %v", diff, refs.Count)
		}
		page := decodeList(t, c.must(http.StatusOK, http.MethodPost, "/policyFragments/tenant-check/listReferences?$top=1&$skip=1", nil))
		if len(page.Value) != 1 || page.Value[0]["id"] != c.id("/apis/chat/operations/onHandshake/policies/policy") || *page.Count != 2 {
			t.Errorf("second page %+v, want the operation's policy of 2", page)
		}
		c.must(http.StatusNotFound, http.MethodPost, "/policyFragments/nope/listReferences", nil)

		// A fragment in use cannot be deleted; the refusal names its users.
		wantError(t, c.do(http.MethodDelete, "/policyFragments/tenant-check", nil, "If-Match", "*"), http.StatusBadRequest, "ValidationError", "",
			"The Policy Fragment 'tenant-check' is used by the following entities:\r\n/policies/policy\r\n/apis/chat/operations/onHandshake/policies/policy\r\n")
		// Nor a named value a fragment references.
		wantError(t, c.do(http.MethodDelete, "/namedValues/tenant", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "policy fragment 'tenant-check'")
		c.must(http.StatusOK, http.MethodDelete, op, nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/policies/policy", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/policyFragments/tenant-check", nil, "If-Match", "*")
	})

	t.Run("recheck", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "frag-recheck")
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/calls", map[string]any{"properties": map[string]any{"displayName": "calls", "value": "10"}})
		c.must(http.StatusCreated, http.MethodPut, "/policyFragments/limit", fragmentDoc(`<fragment><rate-limit calls="{{calls}}" renewal-period="60" /></fragment>`, "", ""))
		c.must(http.StatusCreated, http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy", includeDoc("limit"))
		// A fragment change every includer survives is accepted.
		c.must(http.StatusOK, http.MethodPut, "/policyFragments/limit", fragmentDoc(`<fragment><rate-limit calls="20" renewal-period="60" /></fragment>`, "", ""))
		// One that would break an includer is refused, naming it: a policy a handshake cannot run.
		wantError(t, c.do(http.MethodPut, "/policyFragments/limit", fragmentDoc(`<fragment><cors><allowed-origins><origin>*</origin></allowed-origins></cors></fragment>`, "", "")),
			http.StatusBadRequest, "ValidationError", "", "The policy fragment 'limit' would break the policy of 'apis/chat/operations/onHandshake': Policy 'cors'")
		c.must(http.StatusOK, http.MethodPut, "/policyFragments/limit", fragmentDoc(`<fragment><rate-limit calls="{{calls}}" renewal-period="60" /></fragment>`, "", ""))
		// A named value change that breaks the fragment, and so its includer, is refused naming the policy.
		wantError(t, c.do(http.MethodPut, "/namedValues/calls", map[string]any{"properties": map[string]any{"displayName": "calls", "value": "many"}}),
			http.StatusBadRequest, "ValidationError", "", "The named value 'calls' would break the policy of 'apis/chat/operations/onHandshake'")
	})
}
