package sdktest

import (
	"context"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKProviderEndpoints drives checkNameAvailability and the provider operations list with
// the Azure SDK for Go, as a template tool does before it creates a service.
func TestSDKProviderEndpoints(t *testing.T) {
	t.Parallel()
	_, f := newFactory(t)
	ctx := context.Background()
	createService(t, ctx, f)
	svc := f.NewServiceClient()
	for _, tc := range []struct {
		name      string
		available bool
		reason    armapimanagement.NameAvailabilityReason
	}{
		{"a-free-name", true, armapimanagement.NameAvailabilityReasonValid},
		{serviceName, false, armapimanagement.NameAvailabilityReasonAlreadyExists},
		{"-not-a-name", false, armapimanagement.NameAvailabilityReasonInvalid},
	} {
		res, err := svc.CheckNameAvailability(ctx, armapimanagement.ServiceCheckNameAvailabilityParameters{Name: to.Ptr(tc.name)}, nil)
		if err != nil {
			t.Fatalf("CheckNameAvailability(%s): %v", tc.name, err)
		}
		if *res.NameAvailable != tc.available || *res.Reason != tc.reason {
			t.Errorf("CheckNameAvailability(%s) = %v %v, want %v %v", tc.name, *res.NameAvailable, *res.Reason, tc.available, tc.reason)
		}
	}

	var names []string
	pager := f.NewOperationsClient().NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("operations: %v", err)
		}
		for _, op := range page.Value {
			names = append(names, *op.Name)
		}
	}
	for _, want := range []string{"Microsoft.ApiManagement/service/write", "Microsoft.ApiManagement/service/apis/write",
		"Microsoft.ApiManagement/service/gateways/generateToken/action"} {
		if !slices.Contains(names, want) {
			t.Errorf("operations lack %s; have %d: %v", want, len(names), names)
		}
	}
}
