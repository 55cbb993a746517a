package pipeline

import "testing"

// TestWaitsAndSetsBackend: a pipeline says whether it may wait (counters shared by the fleet,
// keys fetched from an openid-config URL) and whether it may change the backend, wherever the
// policy stands: in a choose branch or an included fragment too.
func TestWaitsAndSetsBackend(t *testing.T) {
	cases := []struct {
		name         string
		policies     string
		waits, backs bool
	}{
		{name: "none", policies: ``},
		{name: "transforms and checks", policies: `<set-header name="X-A" exists-action="override"><value>1</value></set-header>
			<check-header name="X-B" failed-check-httpcode="401" failed-check-error-message="no" ignore-case="false"><value>b</value></check-header>
			<ip-filter action="allow"><address>10.0.0.1</address></ip-filter>
			<validate-jwt header-name="Authorization"><issuer-signing-keys><key>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</key></issuer-signing-keys></validate-jwt>`},
		{name: "rate-limit", policies: `<rate-limit calls="5" renewal-period="60" />`, waits: true},
		{name: "rate-limit-by-key", policies: `<rate-limit-by-key calls="5" renewal-period="60" counter-key="@(context.Request.IpAddress)" />`, waits: true},
		{name: "quota", policies: `<quota calls="5" renewal-period="3600" />`, waits: true},
		{name: "quota-by-key", policies: `<quota-by-key calls="5" renewal-period="3600" counter-key="@(context.Request.IpAddress)" />`, waits: true},
		{name: "limit-connections", policies: `<limit-connections max="5" />`, waits: true},
		{name: "openid-config", policies: `<validate-jwt header-name="Authorization"><openid-config url="https://idp.example/.well-known/openid-configuration" /></validate-jwt>`, waits: true},
		{name: "set-backend-service", policies: `<set-backend-service base-url="http://b.example/" />`, backs: true},
		{name: "in a choose branch", policies: `<choose><when condition="@(true)"><rate-limit calls="5" renewal-period="60" /></when><otherwise><set-backend-service base-url="http://b.example/" /></otherwise></choose>`, waits: true, backs: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := testEnv()
			env.Keys = NewKeySource(nil, nil)
			p := compileInbound(t, env, c.policies)
			if p.Waits() != c.waits || p.SetsBackend() != c.backs {
				t.Fatalf("Waits %v SetsBackend %v, want %v %v", p.Waits(), p.SetsBackend(), c.waits, c.backs)
			}
		})
	}
	t.Run("in a fragment", func(t *testing.T) {
		env := testEnv()
		env.Fragments = fragments(t, map[string]string{"limit": `<rate-limit calls="5" renewal-period="60" />`})
		if p := compileInbound(t, env, `<include-fragment fragment-id="limit" />`); !p.Waits() {
			t.Fatal("a rate-limit in a fragment does not wait")
		}
	})
	var nilPipeline *Pipeline
	if nilPipeline.Waits() || nilPipeline.SetsBackend() {
		t.Fatal("a nil pipeline waits or sets the backend")
	}
}
