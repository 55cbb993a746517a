package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"

	"gatehouse.dev/management/internal/mgmttest"
)

// bearer is an azcore.TokenCredential that always returns the stack's admin token.
type bearer string

func (b bearer) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(b), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// sdk returns the official Azure SDK for Go's clients pointed at the stack's management
// service (plain HTTP on loopback, which the SDK allows when told to).
func (s *stack) sdk(t *testing.T) *armapimanagement.ClientFactory {
	t.Helper()
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: s.env.URL, Audience: "https://management.gatehouse.test"},
		}},
		InsecureAllowCredentialWithHTTP: true,
	}}
	f, err := armapimanagement.NewClientFactory("sub-e2e", bearer(s.env.Token), opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTemplate applies, through the Azure SDK for Go, what an infrastructure-as-code template
// for a WebSocket API sends (issue 14): a certificate and a gateway hostname serving it, two
// Single backends with a circuit breaker and a priority pool of them, a policy fragment, and an
// API whose onHandshake policy includes the fragment and routes to the pool. A real node then
// serves it: wss on the hostname by SNI, the fragment's check enforced, the pool's first
// member down so that clients reach the second.
func TestTemplate(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	f := s.sdk(t)
	ctx := t.Context()
	const rg, svc = "rg-e2e", "svc"
	id := func(kind, name string) string { return s.svc + "/" + kind + "/" + name }

	ca := mgmttest.NewCert(t, "Template CA", nil, nil)
	cert := mgmttest.NewCert(t, "chat.example.test", []string{"chat.example.test"}, ca)
	password := "template-pfx-password"
	s.secret(password, "the PFX password")
	if _, err := f.NewCertificateClient().CreateOrUpdate(ctx, rg, svc, "chat-tls", armapimanagement.CertificateCreateOrUpdateParameters{
		Properties: &armapimanagement.CertificateCreateOrUpdateProperties{Data: to.Ptr(cert.PFX(t, password)), Password: to.Ptr(password)},
	}, nil); err != nil {
		t.Fatalf("certificate: %v", err)
	}
	if _, err := f.NewGatewayHostnameConfigurationClient().CreateOrUpdate(ctx, rg, svc, "gw", "chat", armapimanagement.GatewayHostnameConfigurationContract{
		Properties: &armapimanagement.GatewayHostnameConfigurationContractProperties{Hostname: to.Ptr("chat.example.test"),
			CertificateID: to.Ptr(id("certificates", "chat-tls"))},
	}, nil); err != nil {
		t.Fatalf("hostname configuration: %v", err)
	}

	live := newBackend(t, "live", "")
	backends := f.NewBackendClient()
	single := func(name, url string) {
		t.Helper()
		if _, err := backends.CreateOrUpdate(ctx, rg, svc, name, armapimanagement.BackendContract{Properties: &armapimanagement.BackendContractProperties{
			URL: to.Ptr(url), Protocol: to.Ptr(armapimanagement.BackendProtocolHTTP),
			CircuitBreaker: &armapimanagement.BackendCircuitBreaker{Rules: []*armapimanagement.CircuitBreakerRule{{
				Name: to.Ptr("on-5xx"), TripDuration: to.Ptr("PT1M"),
				FailureCondition: &armapimanagement.CircuitBreakerFailureCondition{Count: to.Ptr[int64](50), Interval: to.Ptr("PT1M"),
					StatusCodeRanges: []*armapimanagement.FailureStatusCodeRange{{Min: to.Ptr[int32](500), Max: to.Ptr[int32](599)}}},
			}}},
		}}, nil); err != nil {
			t.Fatalf("backend %s: %v", name, err)
		}
	}
	single("primary", "ws://"+closedAddr(t)+"/")
	single("secondary", live.wsURL("/"))
	if _, err := backends.CreateOrUpdate(ctx, rg, svc, "chat-pool", armapimanagement.BackendContract{Properties: &armapimanagement.BackendContractProperties{
		Type: to.Ptr(armapimanagement.BackendTypePool),
		Pool: &armapimanagement.BackendBaseParametersPool{Services: []*armapimanagement.BackendPoolItem{
			{ID: to.Ptr(id("backends", "primary")), Priority: to.Ptr[int32](1)},
			{ID: to.Ptr(id("backends", "secondary")), Priority: to.Ptr[int32](2)},
		}},
	}}, nil); err != nil {
		t.Fatalf("pool: %v", err)
	}

	poller, err := f.NewPolicyFragmentClient().BeginCreateOrUpdate(ctx, rg, svc, "tenant-check", armapimanagement.PolicyFragmentContract{
		Properties: &armapimanagement.PolicyFragmentContractProperties{Format: to.Ptr(armapimanagement.PolicyFragmentContentFormatXML),
			Value: to.Ptr(`<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Unknown tenant" ignore-case="true"><value>contoso</value></check-header></fragment>`)},
	}, nil)
	if err != nil {
		t.Fatalf("fragment: %v", err)
	}
	if _, err := poller.PollUntilDone(ctx, nil); err != nil {
		t.Fatalf("fragment: %v", err)
	}

	apiPoller, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, rg, svc, "chat", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{DisplayName: to.Ptr("Chat"), Path: to.Ptr("chat"),
			APIType: to.Ptr(armapimanagement.APITypeWebsocket), Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)},
			ServiceURL: to.Ptr("ws://unused.invalid/")},
	}, nil)
	if err != nil {
		t.Fatalf("API: %v", err)
	}
	if _, err := apiPoller.PollUntilDone(ctx, nil); err != nil {
		t.Fatalf("API: %v", err)
	}
	if _, err := f.NewAPIOperationPolicyClient().CreateOrUpdate(ctx, rg, svc, "chat", "onHandshake", armapimanagement.PolicyIDNamePolicy,
		armapimanagement.PolicyContract{Properties: &armapimanagement.PolicyContractProperties{Format: to.Ptr(armapimanagement.PolicyContentFormatXML),
			Value: to.Ptr(`<policies><inbound><base /><include-fragment fragment-id="tenant-check" /><set-backend-service backend-id="chat-pool" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`)}},
		nil); err != nil {
		t.Fatalf("onHandshake policy: %v", err)
	}
	if _, err := f.NewGatewayAPIClient().CreateOrUpdate(ctx, rg, svc, "gw", "chat", nil); err != nil {
		t.Fatalf("gateway API link: %v", err)
	}
	key := s.subscription(t, "template", "/apis/chat", "active")

	n := s.startNode(t, "template", nodeOptions{env: []string{"GATEWAY_TLS_LISTEN=127.0.0.1:0"}})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := &tlsClient{node: n, serverName: "chat.example.test", roots: roots}

	// The fragment's check runs first: without the header the node answers its 403.
	eventually(t, propagation, func() string {
		conn, err := c.dial("/chat", key)
		if err == nil {
			conn.Close()
			return "a handshake without X-Tenant was upgraded"
		}
		return wantContains(err.Error(), "403", "Unknown tenant")
	})
	if got := c.served(); got != "chat.example.test" {
		t.Errorf("the node served the certificate of %q, want chat.example.test", got)
	}
	// With it, every handshake reaches the pool's second member: the first is down.
	for i := range 5 {
		conn, h, err := c.dialWith("/chat", key, "X-Tenant", "contoso")
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		conn.Close()
		if h.Backend != "live" {
			t.Fatalf("handshake %d reached backend %q, want live", i, h.Backend)
		}
	}
}

// wantContains returns "" when s contains every part, or why not.
func wantContains(s string, parts ...string) string {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return fmt.Sprintf("%q does not mention %q", s, p)
		}
	}
	return ""
}

// The policies of issue 15's template: the fragment checks the tenant from a secret named
// value; revision 1's onHandshake policy includes it and routes to the backend; revision 2's
// also tells the backend which revision the handshake came through.
const (
	tenantFragment  = `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Unknown tenant" ignore-case="true"><value>{{tenant}}</value></check-header></fragment>`
	revision1Policy = `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /><set-backend-service backend-id="chat-backend" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`
	revision2Policy = `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /><set-header name="X-Revision" exists-action="override"><value>2</value></set-header><set-backend-service backend-id="chat-backend" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`
)

// TestTemplateRevisions applies issue 15's template, the one testdata/jssdk/template.mjs
// applies with the JavaScript SDK, through the Azure SDK for Go: a secret named value, a
// backend, a fragment, a Segment version set, v1 of a WebSocket API, a product, a
// subscription and the gateway link; a tag on the API and the product with a tag
// description; an otlp logger, a service diagnostic and the API's; revision 2 with its own
// policy, released. A real node then enforces it as it does the JavaScript SDK's.
func TestTemplateRevisions(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	f := s.sdk(t)
	ctx := t.Context()
	const rg, svc, tenant = "rg-e2e", "svc", "contoso-go"
	id := func(rel string) *string { return to.Ptr(s.svc + "/" + rel) }
	be := newBackend(t, "go-live", "")
	col := newOTLPCollector(t)
	s.secret(tenant, "the secret named value")
	// applied fails the test, naming what, when the SDK call it is given failed.
	applied := func(what string) func(any, error) {
		return func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}

	nv, err := f.NewNamedValueClient().BeginCreateOrUpdate(ctx, rg, svc, "tenant", armapimanagement.NamedValueCreateContract{
		Properties: &armapimanagement.NamedValueCreateContractProperties{DisplayName: to.Ptr("tenant"), Value: to.Ptr(tenant), Secret: to.Ptr(true)}}, nil)
	settle(t, "named value", nv, err)
	applied("backend")(f.NewBackendClient().CreateOrUpdate(ctx, rg, svc, "chat-backend", armapimanagement.BackendContract{
		Properties: &armapimanagement.BackendContractProperties{URL: to.Ptr(be.wsURL("/")), Protocol: to.Ptr(armapimanagement.BackendProtocolHTTP)}}, nil))
	frag, err := f.NewPolicyFragmentClient().BeginCreateOrUpdate(ctx, rg, svc, "tenant-check", armapimanagement.PolicyFragmentContract{
		Properties: &armapimanagement.PolicyFragmentContractProperties{Format: to.Ptr(armapimanagement.PolicyFragmentContentFormatRawxml), Value: to.Ptr(tenantFragment)}}, nil)
	settle(t, "policy fragment", frag, err)
	applied("version set")(f.NewAPIVersionSetClient().CreateOrUpdate(ctx, rg, svc, "chat-versions", armapimanagement.APIVersionSetContract{
		Properties: &armapimanagement.APIVersionSetContractProperties{DisplayName: to.Ptr("Chat"), VersioningScheme: to.Ptr(armapimanagement.VersioningSchemeSegment)}}, nil))
	api, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, rg, svc, "chat", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{DisplayName: to.Ptr("Chat"), Path: to.Ptr("chat"),
			APIType: to.Ptr(armapimanagement.APITypeWebsocket), Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWs)},
			ServiceURL: to.Ptr("ws://unused.invalid/"), APIVersion: to.Ptr("v1"), APIVersionSetID: id("apiVersionSets/chat-versions")}}, nil)
	settle(t, "API", api, err)
	handshakePolicy := func(api, xml string) {
		t.Helper()
		applied(api + " onHandshake policy")(f.NewAPIOperationPolicyClient().CreateOrUpdate(ctx, rg, svc, api, "onHandshake", armapimanagement.PolicyIDNamePolicy,
			armapimanagement.PolicyContract{Properties: &armapimanagement.PolicyContractProperties{Format: to.Ptr(armapimanagement.PolicyContentFormatRawxml), Value: to.Ptr(xml)}}, nil))
	}
	handshakePolicy("chat", revision1Policy)
	applied("product")(f.NewProductClient().CreateOrUpdate(ctx, rg, svc, "starter", armapimanagement.ProductContract{
		Properties: &armapimanagement.ProductContractProperties{DisplayName: to.Ptr("Starter"), SubscriptionRequired: to.Ptr(true),
			ApprovalRequired: to.Ptr(false), State: to.Ptr(armapimanagement.ProductStatePublished)}}, nil))
	applied("product API")(f.NewProductAPIClient().CreateOrUpdate(ctx, rg, svc, "starter", "chat", nil))
	applied("subscription")(f.NewSubscriptionClient().CreateOrUpdate(ctx, rg, svc, "go-sub", armapimanagement.SubscriptionCreateParameters{
		Properties: &armapimanagement.SubscriptionCreateParameterProperties{Scope: to.Ptr("/products/starter"), DisplayName: to.Ptr("Go SDK"),
			State: to.Ptr(armapimanagement.SubscriptionStateActive)}}, nil))
	applied("gateway API")(f.NewGatewayAPIClient().CreateOrUpdate(ctx, rg, svc, "gw", "chat", nil))

	tags := f.NewTagClient()
	applied("tag")(tags.CreateOrUpdate(ctx, rg, svc, "realtime", armapimanagement.TagCreateUpdateParameters{
		Properties: &armapimanagement.TagContractProperties{DisplayName: to.Ptr("Realtime")}}, nil))
	applied("API tag")(tags.AssignToAPI(ctx, rg, svc, "chat", "realtime", nil))
	applied("product tag")(tags.AssignToProduct(ctx, rg, svc, "starter", "realtime", nil))
	applied("tag description")(f.NewAPITagDescriptionClient().CreateOrUpdate(ctx, rg, svc, "chat", "realtime", armapimanagement.TagDescriptionCreateParameters{
		Properties: &armapimanagement.TagDescriptionBaseProperties{Description: to.Ptr("Sessions that stay open"),
			ExternalDocsURL: to.Ptr("https://docs.example.com/realtime"), ExternalDocsDescription: to.Ptr("Realtime guide")}}, nil))

	s.secret("t0ken", "the logger's credential")
	applied("logger")(f.NewLoggerClient().CreateOrUpdate(ctx, rg, svc, "otel", armapimanagement.LoggerContract{
		Properties: &armapimanagement.LoggerContractProperties{LoggerType: to.Ptr(armapimanagement.LoggerType("otlp")),
			Credentials: map[string]*string{"endpoint": to.Ptr(col.srv.URL), "headers": to.Ptr("X-Collector-Token=t0ken")}}}, nil))
	diagnostic := func(logClientIP bool) armapimanagement.DiagnosticContract {
		return armapimanagement.DiagnosticContract{Properties: &armapimanagement.DiagnosticContractProperties{LoggerID: id("loggers/otel"),
			LogClientIP: to.Ptr(logClientIP), Sampling: &armapimanagement.SamplingSettings{
				SamplingType: to.Ptr(armapimanagement.SamplingTypeFixed), Percentage: to.Ptr[float64](100)}}}
	}
	applied("service diagnostic")(f.NewDiagnosticClient().CreateOrUpdate(ctx, rg, svc, "applicationinsights", diagnostic(false), nil))
	applied("API diagnostic")(f.NewAPIDiagnosticClient().CreateOrUpdate(ctx, rg, svc, "chat", "applicationinsights", diagnostic(false), nil))

	rev, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, rg, svc, "chat;rev=2", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{SourceAPIID: id("apis/chat"), APIRevisionDescription: to.Ptr("tells the backend its revision")}}, nil)
	settle(t, "revision 2", rev, err)
	handshakePolicy("chat;rev=2", revision2Policy)
	applied("release")(f.NewAPIReleaseClient().CreateOrUpdate(ctx, rg, svc, "chat", "go-live", armapimanagement.APIReleaseContract{
		Properties: &armapimanagement.APIReleaseContractProperties{APIID: id("apis/chat;rev=2"), Notes: to.Ptr("revision 2 goes live")}}, nil))

	revisions := f.NewAPIRevisionClient().NewListByServicePager(rg, svc, "chat", nil)
	var current []string
	for revisions.More() {
		page, err := revisions.NextPage(ctx)
		if err != nil {
			t.Fatalf("revisions: %v", err)
		}
		for _, r := range page.Value {
			if *r.IsCurrent {
				current = append(current, *r.APIRevision)
			}
		}
	}
	if !slices.Equal(current, []string{"2"}) {
		t.Errorf("the current revisions are %v, want [2]", current)
	}
	keys, err := f.NewSubscriptionClient().ListSecrets(ctx, rg, svc, "go-sub", nil)
	if err != nil {
		t.Fatalf("subscription keys: %v", err)
	}
	s.secret(*keys.PrimaryKey, "the subscription's primary key")
	revisionedTemplate{key: *keys.PrimaryKey, tenant: tenant, backend: be.name, collector: col}.
		enforce(t, s.startNode(t, "template-revisions", nodeOptions{}))
}

// settle waits for a long-running SDK operation p, which started with err, and fails t naming
// what unless it succeeded.
func settle[T any](t *testing.T, what string, p *runtime.Poller[T], err error) {
	t.Helper()
	if err == nil {
		_, err = p.PollUntilDone(t.Context(), nil)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// revisionedTemplate is what issue 15's template (a versioned, revisioned, tagged WebSocket
// API with a logger and diagnostics) leaves for a node to enforce, whichever SDK applied it:
// v1 of the API "chat" at /chat/v1 in a Segment version set; a fragment checking X-Tenant
// against tenant; revision 2 current, whose policy sets X-Revision: 2 and routes to backend;
// revision 1 routing there without it; key a subscription key for the API; an otlp logger
// exporting to collector with a service diagnostic that logs client addresses and the API's
// that does not.
type revisionedTemplate struct {
	key, tenant, backend string
	collector            *otlpCollector
}

// enforce checks through the node n: the tenant check and the subscription key guard
// /chat/v1; a handshake there reaches revision 2's policy, one at /chat/v1;rev=1 revision 1's;
// and a session opened and closed is exported to the collector once, without the client's
// address (the API's diagnostic overriding the service's).
func (tpl revisionedTemplate) enforce(t *testing.T, n *node) {
	t.Helper()
	eventually(t, propagation, func() string {
		status, _, body := handshake(t, n.ws("/chat/v1"), keyHeader(tpl.key))
		if status != http.StatusForbidden {
			return "a handshake without X-Tenant answered " + http.StatusText(status) + ": " + body
		}
		return wantContains(body, "Unknown tenant")
	})
	status, header, body := handshake(t, n.ws("/chat/v1"), http.Header{"X-Tenant": {tpl.tenant}})
	wantGatewayError(t, status, header, body, http.StatusUnauthorized,
		"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")

	h := keyHeader(tpl.key)
	h.Set("X-Tenant", tpl.tenant)
	current, hi := openAndCloseHello(t, n, "/chat/v1", h)
	if hi.Backend != tpl.backend || hi.Header.Get("X-Revision") != "2" {
		t.Errorf("/chat/v1 reached backend %q with X-Revision %q, want %s with 2 (revision 2's policy)", hi.Backend, hi.Header.Get("X-Revision"), tpl.backend)
	}
	first, hi := openAndCloseHello(t, n, "/chat/v1;rev=1", h)
	if hi.Backend != tpl.backend || hi.Header.Values("X-Revision") != nil {
		t.Errorf("/chat/v1;rev=1 reached backend %q with X-Revision %q, want %s without it (revision 1's policy)", hi.Backend, hi.Header.Values("X-Revision"), tpl.backend)
	}

	// Both sessions are exported; once the later one's record is in, a second record of the
	// first would most likely be too.
	eventually(t, 30*time.Second, func() string {
		for _, id := range []string{current, first} {
			if len(tpl.collector.session(id)) == 0 {
				return "the collector has no record of session " + id
			}
		}
		return ""
	})
	recs := tpl.collector.session(current)
	if len(recs) != 1 {
		t.Fatalf("the collector has %d records of session %s, want 1: %v", len(recs), current, recs)
	}
	for k, want := range map[string]string{"body": "websocket closed", "gatehouse.diagnostic": "applicationinsights", "client.address": ""} {
		if recs[0][k] != want {
			t.Errorf("the session's record %s = %q, want %q (record %v)", k, recs[0][k], want, recs[0])
		}
	}
}
