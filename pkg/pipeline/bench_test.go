package pipeline

import (
	"context"
	"testing"
	"time"

	"gatehouse.dev/pkg/pipeline/ratecount"
)

// BenchmarkRunKeyAndJWT measures the handshake path of a typical secured API: an HS256 JWT,
// a header check and a per-subscription rate limit. The same token comes every time, as from a
// client that reconnects: after the first run validate-jwt finds it verified (jwtcache.go).
func BenchmarkRunKeyAndJWT(b *testing.B) {
	env := testEnv()
	env.Counters = ratecount.NewMemory()
	p := compileInbound(b, env, `
		<validate-jwt header-name="Authorization" require-scheme="Bearer">
			<issuer-signing-keys><key>`+hsKeyB64+`</key></issuer-signing-keys>
			<audiences><audience>api://gatehouse</audience></audiences>
			<issuers><issuer>https://idp.example/</issuer></issuers>
		</validate-jwt>
		<check-header name="X-Client" failed-check-httpcode="401" failed-check-error-message="" ignore-case="true">
			<value>web</value><value>mobile</value>
		</check-header>
		<rate-limit calls="1000000000" renewal-period="60" />`)
	claims := goodClaims()
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	claims["nbf"] = time.Now().Add(-time.Hour).Unix()
	req := testRequest()
	req.Now = time.Time{} // the pipeline's clock
	req.Header.Set("Authorization", "Bearer "+hs256(b, hsKey, "", claims))
	req.Header.Set("X-Client", "Web")
	p.now = time.Now
	ctx := context.Background()
	if r := p.Run(ctx, req); r != nil {
		b.Fatalf("Run = %+v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := p.Run(ctx, req); r != nil {
			b.Fatalf("Run = %+v", r)
		}
	}
}

// BenchmarkRunExpressions measures policy expressions on the handshake path: conditions over
// headers, variables and the subscription, interpolation, string methods and a JWT read from
// a header, evaluated by walking the compiled tree.
func BenchmarkRunExpressions(b *testing.B) {
	env := testEnv()
	p := compileInbound(b, env, `
		<set-variable name="tenant" value="@(context.Request.Headers.GetValueOrDefault("X-Tenant", "none").ToLower())" />
		<choose>
			<when condition="@(context.Subscription?.Id == null || context.Variables.GetValueOrDefault<string>("tenant") == "blocked")">
				<return-response><set-status code="403" reason="Forbidden" /></return-response>
			</when>
			<when condition="@(context.Request.Url.Query.ContainsKey("debug") && context.User.Id.StartsWith("admin"))">
				<set-header name="X-Debug" exists-action="override"><value>on</value></set-header>
			</when>
		</choose>
		<set-header name="X-Caller" exists-action="override">
			<value>@($"{context.Variables["tenant"]}/{context.Subscription.Name}/{context.Request.IpAddress}:{context.Api.Name.Length + 1}")</value>
		</set-header>
		<set-header name="X-Sub" exists-action="override">
			<value>@(context.Request.Headers.GetValueOrDefault("Authorization", "").AsJwt()?.Subject ?? "anonymous")</value>
		</set-header>`)
	req := testRequest()
	req.Header.Set("X-Tenant", "Contoso")
	req.Header.Set("Authorization", "Bearer "+hs256(b, hsKey, "", goodClaims()))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req.Variables = nil
		if r := p.Run(ctx, req); r != nil {
			b.Fatalf("Run = %+v", r)
		}
	}
}
