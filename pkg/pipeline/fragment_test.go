package pipeline

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"gatehouse.dev/pkg/policy"
)

// fragments parses fragments by id into an Env's Fragments.
func fragments(t testing.TB, byID map[string]string) map[string]Fragment {
	t.Helper()
	out := map[string]Fragment{}
	for id, v := range byID {
		f, err := policy.ParseFragment(v, policy.FormatRawXML)
		if err != nil {
			t.Fatalf("parse fragment %s: %v", id, err)
		}
		out[strings.ToLower(id)] = Fragment{Doc: f}
	}
	return out
}

// TestIncludeFragment checks that an included fragment's policies run in place, in order,
// wherever the include stands: directly in a section, in a choose branch, inherited through
// <base/>, with the including document's named values.
func TestIncludeFragment(t *testing.T) {
	t.Parallel()
	frags := map[string]string{
		"Tenant":   `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="no tenant" ignore-case="true"><value>{{tenant}}</value></check-header></fragment>`,
		"stamp":    `<fragment><set-header name="X-Stamp" exists-action="append"><value>fragment</value></set-header></fragment>`,
		"loopback": `<fragment><ip-filter action="forbid"><address>10.0.0.1</address></ip-filter></fragment>`,
		"skipped":  `<fragment><cors><allowed-origins><origin>*</origin></allowed-origins></cors></fragment>`,
	}
	tests := []struct {
		name       string
		global     string
		api        string
		header     string
		wantStatus int
		wantStamp  []string
	}{
		{name: "check passes", api: `<include-fragment fragment-id="tenant" />`, header: "Contoso"},
		{name: "check fails", api: `<include-fragment fragment-id="TENANT" />`, wantStatus: http.StatusForbidden},
		{name: "in document order", api: `<set-header name="X-Stamp" exists-action="override"><value>before</value></set-header><include-fragment fragment-id="stamp" /><set-header name="X-Stamp" exists-action="append"><value>after</value></set-header>`,
			wantStamp: []string{"before", "fragment", "after"}},
		{name: "in a choose branch", api: `<choose><when condition="@(true)"><include-fragment fragment-id="loopback" /></when></choose>`, wantStatus: http.StatusForbidden},
		{name: "inherited through base", global: `<include-fragment fragment-id="loopback" />`, api: `<base />`, wantStatus: http.StatusForbidden},
		{name: "twice", api: `<include-fragment fragment-id="stamp" /><include-fragment fragment-id="stamp" />`, wantStamp: []string{"fragment", "fragment"}},
		{name: "only unsupported policies", api: `<include-fragment fragment-id="skipped" />`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testEnv()
			env.NamedValues = map[string]string{"tenant": "contoso"}
			env.Fragments = fragments(t, frags)
			s := Scopes{API: inboundDoc(t, tc.api)}
			if tc.global != "" {
				s.Global = inboundDoc(t, tc.global)
			}
			p, err := Compile(s, env)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			req := testRequest()
			if tc.header != "" {
				req.HTTP.Header.Set("X-Tenant", tc.header)
				req.Header.Set("X-Tenant", tc.header)
			}
			resp := p.Run(context.Background(), req)
			switch {
			case tc.wantStatus == 0 && resp != nil:
				t.Fatalf("Run = %d %q, want the request to pass", resp.Status, resp.Message)
			case tc.wantStatus != 0 && (resp == nil || resp.Status != tc.wantStatus):
				t.Fatalf("Run = %+v, want %d", resp, tc.wantStatus)
			}
			if got := req.Header.Values("X-Stamp"); strings.Join(got, ",") != strings.Join(tc.wantStamp, ",") {
				t.Errorf("X-Stamp = %q, want %q", got, tc.wantStamp)
			}
		})
	}
}

// TestIncludeFragmentErrors checks what Compile says of a fragment it cannot include: the
// include-fragment element is named, with the fragment's own element and position inside.
func TestIncludeFragmentErrors(t *testing.T) {
	t.Parallel()
	env := testEnv()
	env.NamedValues = map[string]string{"secret": "s3cr3t-value"}
	env.Secrets = []string{"s3cr3t-value"}
	env.Fragments = fragments(t, map[string]string{
		"bad-calls": "<fragment>\n<rate-limit calls=\"{{missing}}\" renewal-period=\"60\" /></fragment>",
		"secret":    `<fragment><ip-filter action="allow"><address>{{secret}}</address></ip-filter></fragment>`,
	})
	env.Fragments["broken"] = Fragment{Err: errors.New("Unknown policy.")}
	for _, tc := range []struct{ name, inbound, want string }{
		{"missing", `<include-fragment fragment-id="nope" />`, "Policy fragment with id 'nope' could not be found."},
		{"inner error", `<include-fragment fragment-id="bad-calls" />`, "in the policy fragment 'bad-calls', element 'rate-limit' on line 2, column 1: the named value 'missing' is not defined"},
		{"secret withheld", `<include-fragment fragment-id="secret" />`, "does not compile with the secret named value 'secret' substituted"},
		{"does not parse", `<include-fragment fragment-id="broken" />`, "the policy fragment 'broken' does not parse: Unknown policy."},
	} {
		_, err := Compile(Scopes{API: inboundDoc(t, tc.inbound)}, env)
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v, want a CompileError", tc.name, err)
		}
		if ce.Policy != "include-fragment" || ce.Pos.Line != 3 || ce.Pos.Column != 1 {
			t.Errorf("%s: error at %s %+v, want include-fragment at 3:1", tc.name, ce.Policy, ce.Pos)
		}
		if !strings.Contains(ce.Err.Error(), tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, ce.Err, tc.want)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: %q reveals the secret", tc.name, err)
		}
	}
}

// TestCheckIncludesFragments checks that management's Check compiles fragments as Compile
// does: a fragment failing to compile fails the including document.
func TestCheckIncludesFragments(t *testing.T) {
	t.Parallel()
	env := Env{Fragments: fragments(t, map[string]string{"ok": `<fragment><rate-limit calls="5" renewal-period="60" /></fragment>`,
		"bad": `<fragment><set-header name="X" exists-action="override"><value>@(context.Nope)</value></set-header></fragment>`})}
	if err := Check(inboundDoc(t, `<include-fragment fragment-id="ok" />`), "api:x", env); err != nil {
		t.Errorf("Check(ok) = %v", err)
	}
	if err := Check(inboundDoc(t, `<include-fragment fragment-id="bad" />`), "api:x", env); err == nil {
		t.Error("Check(bad) = nil, want the fragment's expression refused")
	}
}
