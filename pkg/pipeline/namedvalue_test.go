package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// TestCompileErrorsHideSecrets checks that no compile error reveals any part of a secret named
// value, however the failing parser quotes it: split by an expression lexer, trimmed by an
// address parser, or as the beginning of a longer secret.
func TestCompileErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	env := testEnv()
	env.NamedValues = map[string]string{
		"db-pass": "hunter2 correct-horse",
		"api-key": "sk_live_9f8e7d6c5b4a\n",
		"short":   "abcd1234",
		"long":    "abcd1234-extra",
		"plain":   "not-an-address",
	}
	env.Secrets = []string{"hunter2 correct-horse", "sk_live_9f8e7d6c5b4a\n", "abcd1234", "abcd1234-extra"}
	for _, tc := range []struct{ name, inbound, secret string }{
		{"expression", `<set-header name="X" exists-action="override"><value>@({{db-pass}})</value></set-header>`, "db-pass"},
		{"trimmed", `<ip-filter action="allow"><address>{{api-key}}</address></ip-filter>`, "api-key"},
		{"prefix", `<ip-filter action="allow"><address>{{long}}</address></ip-filter>`, "long"},
		{"nested in choose", `<choose><when condition="@(true)"><ip-filter action="allow"><address>{{short}}</address></ip-filter></when></choose>`, "short"},
	} {
		_, err := Compile(Scopes{API: inboundDoc(t, tc.inbound)}, env)
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v, want a CompileError", tc.name, err)
		}
		msg := err.Error()
		for _, part := range []string{"hunter2", "correct-horse", "sk_live", "abcd1234", "extra"} {
			if strings.Contains(msg, part) {
				t.Errorf("%s: %q reveals %q", tc.name, msg, part)
			}
		}
		if !strings.Contains(msg, "'"+tc.secret+"'") || ce.Pos.Line == 0 {
			t.Errorf("%s: %q does not name the secret named value %s and the element's position", tc.name, msg, tc.secret)
		}
	}
	// A plain named value keeps its details: they help whoever wrote the policy.
	_, err := Compile(Scopes{API: inboundDoc(t, `<ip-filter action="allow"><address>{{plain}}</address></ip-filter>`)}, env)
	if err == nil || !strings.Contains(err.Error(), "not-an-address") {
		t.Errorf("plain value: %v, want the value quoted", err)
	}
}

// TestNamedValueExpansionBounded checks that references cannot multiply a value beyond
// MaxNamedValueExpansion per document: such a document is refused with a CompileError at
// once, instead of costing memory and time on management and every node.
func TestNamedValueExpansionBounded(t *testing.T) {
	t.Parallel()
	env := testEnv()
	env.NamedValues = map[string]string{"a": strings.Repeat("x", 4096)}
	doc := `<set-header name="X" exists-action="override"><value>` + strings.Repeat("{{a}}", 20000) + `</value></set-header>`
	_, err := Compile(Scopes{API: inboundDoc(t, doc)}, env)
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "named values expand the document") {
		t.Fatalf("Compile = %v, want the expansion refused", err)
	}
	if err := Check(inboundDoc(t, doc), "api:x", env); err == nil {
		t.Fatal("Check accepted what Compile refuses")
	}
	// Within the bound, many references are fine.
	ok := `<set-header name="X" exists-action="override"><value>` + strings.Repeat("{{a}}", MaxNamedValueExpansion/4096) + `</value></set-header>`
	if _, err := Compile(Scopes{API: inboundDoc(t, ok)}, env); err != nil {
		t.Fatalf("Compile within the bound: %v", err)
	}
}
