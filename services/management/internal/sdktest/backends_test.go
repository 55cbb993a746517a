package sdktest

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKBackends creates a Single backend with a circuit breaker, a Pool of it, and a policy
// whose backend-id names the pool, through the unmodified Azure SDK for Go; a refused property
// comes back as the SDK's ResponseError.
func TestSDKBackends(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	bc := f.NewBackendClient()

	single, err := bc.CreateOrUpdate(ctx, resourceGroup, serviceName, "east", armapimanagement.BackendContract{
		Properties: &armapimanagement.BackendContractProperties{
			URL: to.Ptr("wss://east.example.com/hub"), Protocol: to.Ptr(armapimanagement.BackendProtocolHTTP), Title: to.Ptr("East"),
			CircuitBreaker: &armapimanagement.BackendCircuitBreaker{Rules: []*armapimanagement.CircuitBreakerRule{{
				Name: to.Ptr("trip"), TripDuration: to.Ptr("PT1M"), AcceptRetryAfter: to.Ptr(true),
				FailureCondition: &armapimanagement.CircuitBreakerFailureCondition{Count: to.Ptr[int64](3), Interval: to.Ptr("PT1M"),
					StatusCodeRanges: []*armapimanagement.FailureStatusCodeRange{{Min: to.Ptr[int32](500), Max: to.Ptr[int32](599)}}},
			}}},
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(deref(single.Properties).Type) != armapimanagement.BackendTypeSingle || !deref(deref(deref(single.Properties).TLS).ValidateCertificateChain) {
		t.Errorf("Single backend defaults: %+v", single.Properties)
	}
	pool, err := bc.CreateOrUpdate(ctx, resourceGroup, serviceName, "hubs", armapimanagement.BackendContract{
		Properties: &armapimanagement.BackendContractProperties{Type: to.Ptr(armapimanagement.BackendTypePool),
			Pool: &armapimanagement.BackendBaseParametersPool{Services: []*armapimanagement.BackendPoolItem{
				{ID: single.ID, Priority: to.Ptr[int32](1), Weight: to.Ptr[int32](3)}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if items := deref(deref(pool.Properties).Pool).Services; len(items) != 1 || deref(items[0].ID) != deref(single.ID) || deref(items[0].Weight) != 3 {
		t.Errorf("pool members: %+v", items)
	}
	if _, err := f.NewPolicyClient().CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.PolicyIDNamePolicy, armapimanagement.PolicyContract{
		Properties: &armapimanagement.PolicyContractProperties{Format: to.Ptr(armapimanagement.PolicyContentFormatXML),
			Value: to.Ptr(`<policies><inbound><set-backend-service backend-id="hubs" /></inbound></policies>`)}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = bc.CreateOrUpdate(ctx, resourceGroup, serviceName, "proxied", armapimanagement.BackendContract{
		Properties: &armapimanagement.BackendContractProperties{URL: to.Ptr("https://b.example.com"), Protocol: to.Ptr(armapimanagement.BackendProtocolHTTP),
			Proxy: &armapimanagement.BackendProxyContract{URL: to.Ptr("http://proxy.example.com")}}}, nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
	_, err = bc.Delete(ctx, resourceGroup, serviceName, "hubs", "*", nil)
	responseError(t, err, http.StatusConflict, "Conflict")
	if _, err := bc.Reconnect(ctx, resourceGroup, serviceName, "east", nil); err != nil {
		t.Errorf("reconnect: %v", err)
	}
}
