// Package sdktest drives management with the official Azure SDK for Go (armapimanagement v3),
// unmodified, over HTTPS: the proof that Gatehouse is wire-compatible with APIM's ARM API.
package sdktest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

const (
	subscriptionID = "00000000-0000-0000-0000-0000000000aa"
	resourceGroup  = "rg-sdk"
	serviceName    = "gh-sdk"
	// maxLRO bounds a PollUntilDone: the SDK's default poll interval is 30 s, so a poller that
	// does not finish on its first look fails this. Half of it leaves a loaded machine room.
	maxLRO = 15 * time.Second
)

// staticToken is an azcore.TokenCredential that always returns the same bearer token.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// newFactory starts a management service over TLS and returns SDK clients pointed at it.
func newFactory(t *testing.T) (*mgmttest.Env, *armapimanagement.ClientFactory) {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{TLS: true})
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: env.URL, Audience: "https://management.gatehouse.test"},
		}},
		Transport: env.Client,
	}}
	f, err := armapimanagement.NewClientFactory(subscriptionID, staticToken(env.Token), opts)
	if err != nil {
		t.Fatal(err)
	}
	return env, f
}

// createService creates the test service with the SDK's LRO and checks it finished at once.
func createService(t *testing.T, ctx context.Context, f *armapimanagement.ClientFactory) armapimanagement.ServiceResource {
	t.Helper()
	start := time.Now()
	poller, err := f.NewServiceClient().BeginCreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.ServiceResource{
		Location: to.Ptr("westeurope"),
		SKU:      &armapimanagement.ServiceSKUProperties{Name: to.Ptr(armapimanagement.SKUTypeDeveloper), Capacity: to.Ptr[int32](1)},
		Properties: &armapimanagement.ServiceProperties{
			PublisherEmail: to.Ptr("admin@example.com"),
			PublisherName:  to.Ptr("Example"),
		},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate service: %v", err)
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatalf("service PollUntilDone: %v", err)
	}
	checkQuick(t, "service create", start)
	return res.ServiceResource
}

func checkQuick(t *testing.T, what string, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > maxLRO {
		t.Errorf("%s took %v; the poller should finish without waiting", what, d)
	}
}

// responseError asserts err is an *azcore.ResponseError with the status and ARM code.
func responseError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v (%T), want *azcore.ResponseError %d %s", err, err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("ResponseError = %d %q, want %d %q", re.StatusCode, re.ErrorCode, status, code)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// onHandshakePolicy checks a header against a secret named value and forwards a header.
const onHandshakePolicy = `<policies>
	<inbound>
		<base />
		<check-header name="X-Client-Key" failed-check-httpcode="401" failed-check-error-message="Missing client key" ignore-case="false">
			<value>{{client-key}}</value>
		</check-header>
		<set-header name="X-Gatehouse" exists-action="override">
			<value>sdk</value>
		</set-header>
	</inbound>
	<backend>
		<base />
	</backend>
	<outbound>
		<base />
	</outbound>
	<on-error>
		<base />
	</on-error>
</policies>`

// TestSDKLifecycle walks a WebSocket API from service creation to deletion with the SDK, the
// way an operator's tool would. Steps depend on each other, so the first failure stops the walk.
func TestSDKLifecycle(t *testing.T) {
	env, f := newFactory(t)
	ctx := t.Context()
	begin := time.Now()
	var (
		svc       armapimanagement.ServiceResource
		apiC      armapimanagement.APIContract
		product   armapimanagement.ProductContract
		user      armapimanagement.UserContract
		sub       armapimanagement.SubscriptionContract
		gwToken   string
		apiClient = f.NewAPIClient()
		subClient = f.NewSubscriptionClient()
		gwClient  = f.NewGatewayClient()
		prodCl    = f.NewProductClient()
	)
	step := func(name string, fn func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}

	step("create service", func(t *testing.T) {
		svc = createService(t, ctx, f)
		wantID := "/subscriptions/" + subscriptionID + "/resourceGroups/" + resourceGroup + "/providers/Microsoft.ApiManagement/service/" + serviceName
		if got := deref(svc.ID); !strings.EqualFold(got, wantID) {
			t.Errorf("id = %q, want %q", got, wantID)
		}
		if got := deref(svc.Properties.ProvisioningState); got != "Succeeded" {
			t.Errorf("provisioningState = %q, want Succeeded", got)
		}
		if deref(svc.Properties.PublisherEmail) != "admin@example.com" || deref(deref(svc.SKU).Name) != armapimanagement.SKUTypeDeveloper {
			t.Errorf("service = %+v / sku %+v, want the publisher and SKU sent", svc.Properties, svc.SKU)
		}
		got, err := f.NewServiceClient().Get(ctx, resourceGroup, serviceName, nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(got.Name) != serviceName || deref(got.Location) != "westeurope" {
			t.Errorf("Get service = %q in %q", deref(got.Name), deref(got.Location))
		}
	})

	step("create secret named value", func(t *testing.T) {
		nv := f.NewNamedValueClient()
		start := time.Now()
		poller, err := nv.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "client-key", armapimanagement.NamedValueCreateContract{
			Properties: &armapimanagement.NamedValueCreateContractProperties{
				DisplayName: to.Ptr("client-key"), Value: to.Ptr("k3y-from-vault"), Secret: to.Ptr(true),
				Tags: []*string{to.Ptr("sdk")},
			},
		}, nil)
		if err != nil {
			t.Fatalf("BeginCreateOrUpdate named value: %v", err)
		}
		res, err := poller.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "named value create", start)
		if !deref(res.Properties.Secret) || deref(res.Properties.DisplayName) != "client-key" {
			t.Errorf("named value = %+v, want secret client-key", res.Properties)
		}
		if v := deref(res.Properties.Value); v == "k3y-from-vault" {
			t.Error("the PUT response reveals the secret value")
		}
		val, err := nv.ListValue(ctx, resourceGroup, serviceName, "client-key", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(val.Value) != "k3y-from-vault" {
			t.Errorf("listValue = %q, want the secret", deref(val.Value))
		}
		if deref(val.ETag) == "" {
			t.Error("listValue returned no ETag")
		}

		tag, err := nv.GetEntityTag(ctx, resourceGroup, serviceName, "client-key", nil)
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		up, err := nv.BeginUpdate(ctx, resourceGroup, serviceName, "client-key", deref(tag.ETag), armapimanagement.NamedValueUpdateParameters{
			Properties: &armapimanagement.NamedValueUpdateParameterProperties{Tags: []*string{to.Ptr("sdk"), to.Ptr("rotated")}},
		}, nil)
		if err != nil {
			t.Fatalf("BeginUpdate named value: %v", err)
		}
		upd, err := up.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "named value update", start)
		var tags []string
		for _, tg := range upd.Properties.Tags {
			tags = append(tags, deref(tg))
		}
		if diff := cmp.Diff([]string{"sdk", "rotated"}, tags); diff != "" {
			t.Errorf("tags after PATCH (-want +got):\n%s", diff)
		}
		if !deref(upd.Properties.Secret) {
			t.Error("PATCH of the tags dropped secret")
		}
	})

	step("create websocket API", func(t *testing.T) {
		start := time.Now()
		poller, err := apiClient.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.APICreateOrUpdateParameter{
			Properties: &armapimanagement.APICreateOrUpdateProperties{
				DisplayName: to.Ptr("Chat"),
				Path:        to.Ptr("chat"),
				ServiceURL:  to.Ptr("wss://chat.backend.example/socket"),
				APIType:     to.Ptr(armapimanagement.APITypeWebsocket),
				SoapAPIType: to.Ptr(armapimanagement.SoapAPITypeWebSocket),
				Protocols:   []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)},
			},
		}, nil)
		if err != nil {
			t.Fatalf("BeginCreateOrUpdate API: %v", err)
		}
		res, err := poller.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "API create", start)
		apiC = res.APIContract
		p := apiC.Properties
		if deref(apiC.Name) != "chat" || deref(apiC.Type) != "Microsoft.ApiManagement/service/apis" || !strings.HasSuffix(deref(apiC.ID), "/service/"+serviceName+"/apis/chat") {
			t.Errorf("API envelope = %q %q %q", deref(apiC.ID), deref(apiC.Name), deref(apiC.Type))
		}
		if deref(p.APIType) != armapimanagement.APITypeWebsocket || deref(p.Path) != "chat" || deref(p.ServiceURL) != "wss://chat.backend.example/socket" {
			t.Errorf("API properties = type %q path %q serviceUrl %q", deref(p.APIType), deref(p.Path), deref(p.ServiceURL))
		}
		if len(p.Protocols) != 1 || deref(p.Protocols[0]) != armapimanagement.ProtocolWss {
			t.Errorf("protocols = %v, want [wss]", p.Protocols)
		}
		if deref(p.ProvisioningState) != "Succeeded" || !deref(p.IsCurrent) || !deref(p.SubscriptionRequired) {
			t.Errorf("provisioningState %q isCurrent %v subscriptionRequired %v", deref(p.ProvisioningState), deref(p.IsCurrent), deref(p.SubscriptionRequired))
		}
		if k := p.SubscriptionKeyParameterNames; k == nil || deref(k.Header) != "Ocp-Apim-Subscription-Key" || deref(k.Query) != "subscription-key" {
			t.Errorf("subscriptionKeyParameterNames = %+v, want APIM's defaults", k)
		}

		// Re-PUT with the ETag from Get: an update, still a finished LRO.
		got, err := apiClient.Get(ctx, resourceGroup, serviceName, "chat", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(got.ETag) == "" {
			t.Fatal("Get API returned no ETag")
		}
		start = time.Now()
		poller, err = apiClient.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.APICreateOrUpdateParameter{
			Properties: &armapimanagement.APICreateOrUpdateProperties{
				DisplayName: to.Ptr("Chat v2"), Path: to.Ptr("chat"), ServiceURL: to.Ptr("wss://chat.backend.example/socket"),
				APIType: to.Ptr(armapimanagement.APITypeWebsocket), Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)},
			},
		}, &armapimanagement.APIClientBeginCreateOrUpdateOptions{IfMatch: got.ETag})
		if err != nil {
			t.Fatalf("update API with If-Match: %v", err)
		}
		res, err = poller.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "API update", start)
		if deref(res.Properties.DisplayName) != "Chat v2" {
			t.Errorf("displayName after update = %q", deref(res.Properties.DisplayName))
		}
	})

	step("onHandshake operation and policy", func(t *testing.T) {
		ops := f.NewAPIOperationClient()
		var names []string
		pager := ops.NewListByAPIPager(resourceGroup, serviceName, "chat", nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range page.Value {
				names = append(names, deref(op.Name))
			}
		}
		if diff := cmp.Diff([]string{"onHandshake"}, names); diff != "" {
			t.Errorf("operations of a WebSocket API (-want +got):\n%s", diff)
		}
		op, err := ops.Get(ctx, resourceGroup, serviceName, "chat", "onHandshake", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(op.Properties.Method) == "" || deref(op.ETag) == "" {
			t.Errorf("onHandshake = method %q etag %q", deref(op.Properties.Method), deref(op.ETag))
		}

		pol := f.NewAPIOperationPolicyClient()
		put, err := pol.CreateOrUpdate(ctx, resourceGroup, serviceName, "chat", "onHandshake", armapimanagement.PolicyIDNamePolicy,
			armapimanagement.PolicyContract{Properties: &armapimanagement.PolicyContractProperties{
				Value: to.Ptr(onHandshakePolicy), Format: to.Ptr(armapimanagement.PolicyContentFormatXML),
			}}, nil)
		if err != nil {
			t.Fatalf("put onHandshake policy: %v", err)
		}
		if deref(put.ETag) == "" || !strings.HasSuffix(deref(put.ID), "/apis/chat/operations/onHandshake/policies/policy") {
			t.Errorf("policy PUT = id %q etag %q", deref(put.ID), deref(put.ETag))
		}
		got, err := pol.Get(ctx, resourceGroup, serviceName, "chat", "onHandshake", armapimanagement.PolicyIDNamePolicy,
			&armapimanagement.APIOperationPolicyClientGetOptions{Format: to.Ptr(armapimanagement.PolicyExportFormatXML)})
		if err != nil {
			t.Fatal(err)
		}
		v := deref(got.Properties.Value)
		for _, want := range []string{`<check-header name="X-Client-Key"`, "{{client-key}}", `<set-header name="X-Gatehouse"`} {
			if !strings.Contains(v, want) {
				t.Errorf("policy read back lacks %s:\n%s", want, v)
			}
		}
		list, err := pol.ListByOperation(ctx, resourceGroup, serviceName, "chat", "onHandshake", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Value) != 1 || deref(list.Value[0].Name) != "policy" {
			t.Errorf("ListByOperation = %d policies", len(list.Value))
		}

		// A policy at API scope is refused for a WebSocket API, as in APIM.
		_, err = f.NewAPIPolicyClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.PolicyIDNamePolicy,
			armapimanagement.PolicyContract{Properties: &armapimanagement.PolicyContractProperties{Value: to.Ptr(onHandshakePolicy)}}, nil)
		responseError(t, err, http.StatusBadRequest, "ValidationError")
	})

	step("product and link", func(t *testing.T) {
		res, err := prodCl.CreateOrUpdate(ctx, resourceGroup, serviceName, "starter", armapimanagement.ProductContract{
			Properties: &armapimanagement.ProductContractProperties{
				DisplayName: to.Ptr("Starter"), Description: to.Ptr("Chat for everyone"),
				SubscriptionRequired: to.Ptr(true), ApprovalRequired: to.Ptr(false), State: to.Ptr(armapimanagement.ProductStatePublished),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		product = res.ProductContract
		if deref(product.Properties.State) != armapimanagement.ProductStatePublished || deref(res.ETag) == "" {
			t.Errorf("product state %q etag %q", deref(product.Properties.State), deref(res.ETag))
		}
		pa := f.NewProductAPIClient()
		link, err := pa.CreateOrUpdate(ctx, resourceGroup, serviceName, "starter", "chat", nil)
		if err != nil {
			t.Fatalf("link product and API: %v", err)
		}
		if deref(link.ID) != deref(apiC.ID) || deref(link.Properties.APIType) != armapimanagement.APITypeWebsocket {
			t.Errorf("link returned %q type %q, want the API %q", deref(link.ID), deref(link.Properties.APIType), deref(apiC.ID))
		}
		exists, err := pa.CheckEntityExists(ctx, resourceGroup, serviceName, "starter", "chat", nil)
		if err != nil || !exists.Success {
			t.Errorf("CheckEntityExists = %v, %v", exists.Success, err)
		}
		var linked []string
		pager := pa.NewListByProductPager(resourceGroup, serviceName, "starter", nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Value {
				linked = append(linked, deref(a.Name))
			}
		}
		if diff := cmp.Diff([]string{"chat"}, linked); diff != "" {
			t.Errorf("APIs of the product (-want +got):\n%s", diff)
		}
	})

	step("user", func(t *testing.T) {
		res, err := f.NewUserClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "alice", armapimanagement.UserCreateParameters{
			Properties: &armapimanagement.UserCreateParameterProperties{
				Email: to.Ptr("alice@example.com"), FirstName: to.Ptr("Alice"), LastName: to.Ptr("Doe"),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		user = res.UserContract
		p := user.Properties
		if deref(p.Email) != "alice@example.com" || deref(p.FirstName) != "Alice" || deref(p.State) != armapimanagement.UserStateActive {
			t.Errorf("user = email %q first %q state %q", deref(p.Email), deref(p.FirstName), deref(p.State))
		}
	})

	step("subscription and keys", func(t *testing.T) {
		res, err := subClient.CreateOrUpdate(ctx, resourceGroup, serviceName, "alice-starter", armapimanagement.SubscriptionCreateParameters{
			Properties: &armapimanagement.SubscriptionCreateParameterProperties{
				DisplayName: to.Ptr("Alice on Starter"), Scope: product.ID, OwnerID: user.ID,
				State: to.Ptr(armapimanagement.SubscriptionStateActive),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sub = res.SubscriptionContract
		p := sub.Properties
		if deref(p.State) != armapimanagement.SubscriptionStateActive || deref(res.ETag) == "" {
			t.Errorf("subscription state %q etag %q", deref(p.State), deref(res.ETag))
		}
		if !strings.HasSuffix(deref(p.Scope), "/products/starter") || !strings.HasSuffix(deref(p.OwnerID), "/users/alice") {
			t.Errorf("scope %q owner %q", deref(p.Scope), deref(p.OwnerID))
		}
		if p.PrimaryKey != nil || p.SecondaryKey != nil {
			t.Error("the subscription PUT response reveals its keys; they belong to listSecrets")
		}

		before, err := subClient.ListSecrets(ctx, resourceGroup, serviceName, "alice-starter", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(before.PrimaryKey) == "" || deref(before.SecondaryKey) == "" || deref(before.PrimaryKey) == deref(before.SecondaryKey) {
			t.Fatalf("listSecrets = %q / %q, want two different keys", deref(before.PrimaryKey), deref(before.SecondaryKey))
		}
		if deref(before.ETag) == "" {
			t.Error("listSecrets returned no ETag")
		}
		if _, err := subClient.RegeneratePrimaryKey(ctx, resourceGroup, serviceName, "alice-starter", nil); err != nil {
			t.Fatalf("regeneratePrimaryKey: %v", err)
		}
		after, err := subClient.ListSecrets(ctx, resourceGroup, serviceName, "alice-starter", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(after.PrimaryKey) == deref(before.PrimaryKey) || deref(after.PrimaryKey) == "" {
			t.Errorf("primary key not regenerated: %q", deref(after.PrimaryKey))
		}
		if deref(after.SecondaryKey) != deref(before.SecondaryKey) {
			t.Error("regenerating the primary key changed the secondary key")
		}
	})

	step("gateway, keys and token", func(t *testing.T) {
		res, err := gwClient.CreateOrUpdate(ctx, resourceGroup, serviceName, "edge-eu", armapimanagement.GatewayContract{
			Properties: &armapimanagement.GatewayContractProperties{
				LocationData: &armapimanagement.ResourceLocationDataContract{Name: to.Ptr("Amsterdam DC"), City: to.Ptr("Amsterdam")},
				Description:  to.Ptr("EU edge"),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(res.Properties.LocationData.Name) != "Amsterdam DC" || deref(res.ETag) == "" {
			t.Errorf("gateway location %q etag %q", deref(res.Properties.LocationData.Name), deref(res.ETag))
		}
		before, err := gwClient.ListKeys(ctx, resourceGroup, serviceName, "edge-eu", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(before.Primary) == "" || deref(before.Secondary) == "" || deref(before.Primary) == deref(before.Secondary) {
			t.Fatalf("listKeys = %q / %q, want two different keys", deref(before.Primary), deref(before.Secondary))
		}
		if _, err := gwClient.RegenerateKey(ctx, resourceGroup, serviceName, "edge-eu",
			armapimanagement.GatewayKeyRegenerationRequestContract{KeyType: to.Ptr(armapimanagement.KeyTypeSecondary)}, nil); err != nil {
			t.Fatalf("regenerateKey: %v", err)
		}
		after, err := gwClient.ListKeys(ctx, resourceGroup, serviceName, "edge-eu", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(after.Secondary) == deref(before.Secondary) || deref(after.Primary) != deref(before.Primary) {
			t.Errorf("after regenerating the secondary key: primary changed %v, secondary changed %v",
				deref(after.Primary) != deref(before.Primary), deref(after.Secondary) != deref(before.Secondary))
		}

		expiry := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Minute)
		tok, err := gwClient.GenerateToken(ctx, resourceGroup, serviceName, "edge-eu", armapimanagement.GatewayTokenRequestContract{
			KeyType: to.Ptr(armapimanagement.KeyTypePrimary), Expiry: &expiry,
		}, nil)
		if err != nil {
			t.Fatalf("generateToken: %v", err)
		}
		gwToken = deref(tok.Value)
		// APIM's shape: "{id}&{yyyyMMddHHmm}&{base64 HMAC-SHA512}".
		parts := strings.Split(gwToken, "&")
		if len(parts) != 3 || parts[0] == "" || !regexp.MustCompile(`^\d{12}$`).MatchString(parts[1]) {
			t.Fatalf("token %q does not have the shape id&yyyyMMddHHmm&signature", gwToken)
		}
		if parts[1] != expiry.Format("200601021504") {
			t.Errorf("token expiry %s, want %s", parts[1], expiry.Format("200601021504"))
		}
		if sig, err := base64.StdEncoding.DecodeString(parts[2]); err != nil || len(sig) != 64 {
			t.Errorf("token signature %q is not a base64 HMAC-SHA512 (%d bytes, %v)", parts[2], len(sig), err)
		}

		// Too long a lifetime is APIM's ValidationError.
		far := time.Now().Add(31 * 24 * time.Hour)
		_, err = gwClient.GenerateToken(ctx, resourceGroup, serviceName, "edge-eu", armapimanagement.GatewayTokenRequestContract{
			KeyType: to.Ptr(armapimanagement.KeyTypePrimary), Expiry: &far,
		}, nil)
		responseError(t, err, http.StatusBadRequest, "ValidationError")

		// The token opens the gateway's configuration endpoint.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.URL+configwire.SnapshotPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "GatewayKey "+gwToken)
		resp, err := env.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("gateway config with the SDK's token: status %d", resp.StatusCode)
		}
	})

	step("gateway API", func(t *testing.T) {
		ga := f.NewGatewayAPIClient()
		res, err := ga.CreateOrUpdate(ctx, resourceGroup, serviceName, "edge-eu", "chat", &armapimanagement.GatewayAPIClientCreateOrUpdateOptions{
			Parameters: &armapimanagement.AssociationContract{Properties: &armapimanagement.AssociationContractProperties{
				ProvisioningState: to.Ptr("created"),
			}},
		})
		if err != nil {
			t.Fatalf("add API to gateway: %v", err)
		}
		if deref(res.Name) != "chat" || deref(res.Type) != "Microsoft.ApiManagement/service/gateways/apis" {
			t.Errorf("gateway API = name %q type %q", deref(res.Name), deref(res.Type))
		}
		if _, err := ga.GetEntityTag(ctx, resourceGroup, serviceName, "edge-eu", "chat", nil); err != nil {
			t.Errorf("HEAD gateway API: %v", err)
		}
		var names []string
		pager := ga.NewListByServicePager(resourceGroup, serviceName, "edge-eu", nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Value {
				names = append(names, deref(a.Name))
			}
		}
		if diff := cmp.Diff([]string{"chat"}, names); diff != "" {
			t.Errorf("APIs of the gateway (-want +got):\n%s", diff)
		}
	})

	step("stale ETag is refused", func(t *testing.T) {
		tag, err := prodCl.GetEntityTag(ctx, resourceGroup, serviceName, "starter", nil)
		if err != nil {
			t.Fatal(err)
		}
		stale := deref(tag.ETag)
		if stale == "" || !tag.Success {
			t.Fatalf("GetEntityTag = %+v", tag)
		}
		upd, err := prodCl.Update(ctx, resourceGroup, serviceName, "starter", stale, armapimanagement.ProductUpdateParameters{
			Properties: &armapimanagement.ProductUpdateProperties{Description: to.Ptr("Chat for everyone, now with terms"), Terms: to.Ptr("Be nice.")},
		}, nil)
		if err != nil {
			t.Fatalf("PATCH product with its ETag: %v", err)
		}
		if deref(upd.ETag) == "" || deref(upd.ETag) == stale || deref(upd.Properties.Terms) != "Be nice." {
			t.Errorf("PATCH returned etag %q (was %q), terms %q", deref(upd.ETag), stale, deref(upd.Properties.Terms))
		}
		_, err = prodCl.Delete(ctx, resourceGroup, serviceName, "starter", stale, nil)
		responseError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
		_, err = prodCl.Update(ctx, resourceGroup, serviceName, "starter", stale, armapimanagement.ProductUpdateParameters{
			Properties: &armapimanagement.ProductUpdateProperties{Terms: to.Ptr("lost update")},
		}, nil)
		responseError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
		got, err := prodCl.Get(ctx, resourceGroup, serviceName, "starter", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(got.Properties.Terms) != "Be nice." {
			t.Errorf("terms = %q after refused writes", deref(got.Properties.Terms))
		}
	})

	step("delete API with its ETag", func(t *testing.T) {
		tag, err := apiClient.GetEntityTag(ctx, resourceGroup, serviceName, "chat", nil)
		if err != nil {
			t.Fatal(err)
		}
		if deref(tag.ETag) == "" {
			t.Fatal("GetEntityTag returned no ETag")
		}
		start := time.Now()
		poller, err := apiClient.BeginDelete(ctx, resourceGroup, serviceName, "chat", deref(tag.ETag), nil)
		if err != nil {
			t.Fatalf("BeginDelete API: %v", err)
		}
		if _, err := poller.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "API delete", start)
		_, err = apiClient.Get(ctx, resourceGroup, serviceName, "chat", nil)
		responseError(t, err, http.StatusNotFound, "ResourceNotFound")
		_, err = apiClient.GetEntityTag(ctx, resourceGroup, serviceName, "chat", nil)
		responseError(t, err, http.StatusNotFound, "ResourceNotFound")
		// The API's links and its gateway assignment went with it.
		exists, err := f.NewProductAPIClient().CheckEntityExists(ctx, resourceGroup, serviceName, "starter", "chat", nil)
		if err == nil && exists.Success {
			t.Error("the product still lists the deleted API")
		}
	})

	step("delete user and its subscriptions", func(t *testing.T) {
		tag, err := f.NewUserClient().GetEntityTag(ctx, resourceGroup, serviceName, "alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		poller, err := f.NewUserClient().BeginDelete(ctx, resourceGroup, serviceName, "alice", deref(tag.ETag),
			&armapimanagement.UserClientBeginDeleteOptions{DeleteSubscriptions: to.Ptr(true)})
		if err != nil {
			t.Fatalf("BeginDelete user: %v", err)
		}
		if _, err := poller.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "user delete", start)
		_, err = subClient.Get(ctx, resourceGroup, serviceName, "alice-starter", nil)
		responseError(t, err, http.StatusNotFound, "ResourceNotFound")
	})

	step("update and delete service", func(t *testing.T) {
		sc := f.NewServiceClient()
		start := time.Now()
		up, err := sc.BeginUpdate(ctx, resourceGroup, serviceName, armapimanagement.ServiceUpdateParameters{
			Tags: map[string]*string{"env": to.Ptr("test")},
		}, nil)
		if err != nil {
			t.Fatalf("BeginUpdate service: %v", err)
		}
		res, err := up.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "service update", start)
		if deref(res.Tags["env"]) != "test" || deref(res.Properties.PublisherName) != "Example" {
			t.Errorf("service after PATCH: tags %v publisherName %q", res.Tags, deref(res.Properties.PublisherName))
		}
		start = time.Now()
		del, err := sc.BeginDelete(ctx, resourceGroup, serviceName, nil)
		if err != nil {
			t.Fatalf("BeginDelete service: %v", err)
		}
		if _, err := del.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkQuick(t, "service delete", start)
		_, err = sc.Get(ctx, resourceGroup, serviceName, nil)
		responseError(t, err, http.StatusNotFound, "ResourceNotFound")
	})

	// Below the SDK's 30 s poll interval, whatever the load: no step waited for a poll.
	if d := time.Since(begin); d > 25*time.Second {
		t.Errorf("the walk took %v; it should take seconds", d)
	}
}

// TestSDKPaging pages through lists with a $top small enough to force nextLink paging.
func TestSDKPaging(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	apis, products := f.NewAPIClient(), f.NewProductClient()
	for i := range 5 {
		id := fmt.Sprintf("ws-%d", i)
		poller, err := apis.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, id, armapimanagement.APICreateOrUpdateParameter{
			Properties: &armapimanagement.APICreateOrUpdateProperties{
				DisplayName: to.Ptr(id), Path: to.Ptr(id), ServiceURL: to.Ptr("wss://backend.example/" + id),
				APIType: to.Ptr(armapimanagement.APITypeWebsocket),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := poller.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
		pid := fmt.Sprintf("product-%d", i)
		if _, err := products.CreateOrUpdate(ctx, resourceGroup, serviceName, pid, armapimanagement.ProductContract{
			Properties: &armapimanagement.ProductContractProperties{DisplayName: to.Ptr(pid)},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	poller, err := apis.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "rest", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{DisplayName: to.Ptr("REST"), Path: to.Ptr("rest"), ServiceURL: to.Ptr("https://backend.example")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}

	type page struct {
		Names []string
		Count int64
	}
	apiPages := func(opts *armapimanagement.APIClientListByServiceOptions) func(t *testing.T) []page {
		return func(t *testing.T) []page {
			var out []page
			pager := apis.NewListByServicePager(resourceGroup, serviceName, opts)
			for pager.More() {
				p, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var pg page
				for _, v := range p.Value {
					pg.Names = append(pg.Names, deref(v.Name))
				}
				pg.Count = deref(p.Count)
				out = append(out, pg)
			}
			return out
		}
	}
	productPages := func(opts *armapimanagement.ProductClientListByServiceOptions) func(t *testing.T) []page {
		return func(t *testing.T) []page {
			var out []page
			pager := products.NewListByServicePager(resourceGroup, serviceName, opts)
			for pager.More() {
				p, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var pg page
				for _, v := range p.Value {
					pg.Names = append(pg.Names, deref(v.Name))
				}
				pg.Count = deref(p.Count)
				out = append(out, pg)
			}
			return out
		}
	}
	tests := []struct {
		name string
		list func(t *testing.T) []page
		want []page
	}{
		{
			name: "apis top 2",
			list: apiPages(&armapimanagement.APIClientListByServiceOptions{Top: to.Ptr[int32](2)}),
			want: []page{{[]string{"rest", "ws-0"}, 6}, {[]string{"ws-1", "ws-2"}, 6}, {[]string{"ws-3", "ws-4"}, 6}},
		},
		{
			name: "apis filter keeps across pages",
			list: apiPages(&armapimanagement.APIClientListByServiceOptions{Top: to.Ptr[int32](2), Filter: to.Ptr("startswith(name,'ws-')")}),
			want: []page{{[]string{"ws-0", "ws-1"}, 5}, {[]string{"ws-2", "ws-3"}, 5}, {[]string{"ws-4"}, 5}},
		},
		{
			name: "apis skip then top",
			list: apiPages(&armapimanagement.APIClientListByServiceOptions{Top: to.Ptr[int32](4), Skip: to.Ptr[int32](3)}),
			want: []page{{[]string{"ws-2", "ws-3", "ws-4"}, 6}},
		},
		{
			name: "products top 3",
			list: productPages(&armapimanagement.ProductClientListByServiceOptions{Top: to.Ptr[int32](3)}),
			want: []page{{[]string{"product-0", "product-1", "product-2"}, 5}, {[]string{"product-3", "product-4"}, 5}},
		},
		{
			name: "products without top",
			list: productPages(nil),
			want: []page{{[]string{"product-0", "product-1", "product-2", "product-3", "product-4"}, 5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, tt.list(t)); diff != "" {
				t.Errorf("pages (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSDKErrors checks that errors reach SDK callers as *azcore.ResponseError with APIM's codes.
func TestSDKErrors(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	if _, err := f.NewProductClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "p", armapimanagement.ProductContract{
		Properties: &armapimanagement.ProductContractProperties{DisplayName: to.Ptr("P")},
	}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"get missing API", func() error {
			_, err := f.NewAPIClient().Get(ctx, resourceGroup, serviceName, "nope", nil)
			return err
		}, http.StatusNotFound, "ResourceNotFound"},
		{"HEAD missing user", func() error {
			_, err := f.NewUserClient().GetEntityTag(ctx, resourceGroup, serviceName, "nope", nil)
			return err
		}, http.StatusNotFound, "ResourceNotFound"},
		{"listSecrets of missing subscription", func() error {
			_, err := f.NewSubscriptionClient().ListSecrets(ctx, resourceGroup, serviceName, "nope", nil)
			return err
		}, http.StatusNotFound, "ResourceNotFound"},
		{"get missing service", func() error {
			_, err := f.NewServiceClient().Get(ctx, resourceGroup, "nope", nil)
			return err
		}, http.StatusNotFound, "ResourceNotFound"},
		{"delete product with wrong ETag", func() error {
			_, err := f.NewProductClient().Delete(ctx, resourceGroup, serviceName, "p", `"not-the-etag"`, nil)
			return err
		}, http.StatusPreconditionFailed, "PreconditionFailed"},
		{"update product with wrong ETag", func() error {
			_, err := f.NewProductClient().Update(ctx, resourceGroup, serviceName, "p", "AAAAAAAAAAa=",
				armapimanagement.ProductUpdateParameters{Properties: &armapimanagement.ProductUpdateProperties{Terms: to.Ptr("x")}}, nil)
			return err
		}, http.StatusPreconditionFailed, "PreconditionFailed"},
		{"websocket API with http protocol", func() error {
			_, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "bad", armapimanagement.APICreateOrUpdateParameter{
				Properties: &armapimanagement.APICreateOrUpdateProperties{
					DisplayName: to.Ptr("Bad"), Path: to.Ptr("bad"), ServiceURL: to.Ptr("wss://backend.example"),
					APIType: to.Ptr(armapimanagement.APITypeWebsocket), Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolHTTPS)},
				},
			}, nil)
			return err
		}, http.StatusBadRequest, "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			responseError(t, tt.call(), tt.status, tt.code)
		})
	}
}
