package sdktest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKPolicyFragments manages a policy fragment with the SDK's PolicyFragmentClient: the
// long-running create finishes at its first response, Get answers in both formats,
// ListReferences names the global policy including it, and Delete is refused while it is
// included and succeeds once it is not.
func TestSDKPolicyFragments(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	frags := f.NewPolicyFragmentClient()
	const value = `<fragment><set-header name="X-Stamp" exists-action="override"><value>@(context.Api.Name)</value></set-header></fragment>`

	start := time.Now()
	poller, err := frags.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "stamp", armapimanagement.PolicyFragmentContract{
		Properties: &armapimanagement.PolicyFragmentContractProperties{
			Value: to.Ptr(value), Format: to.Ptr(armapimanagement.PolicyFragmentContentFormatXML), Description: to.Ptr("stamps the API name"),
		},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate fragment: %v", err)
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatalf("fragment PollUntilDone: %v", err)
	}
	checkQuick(t, "fragment create", start)
	if deref(res.Properties.ProvisioningState) != "Succeeded" || deref(res.Properties.Description) != "stamps the API name" {
		t.Errorf("created fragment = %+v", res.Properties)
	}

	xml, err := frags.Get(ctx, resourceGroup, serviceName, "stamp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := deref(xml.Properties.Value); strings.Contains(v, "<fragment") || !strings.HasPrefix(v, "<set-header") || deref(xml.ETag) == "" {
		t.Errorf("Get (xml) value %q etag %q, want the policies without the <fragment> root and an ETag", v, deref(xml.ETag))
	}
	raw, err := frags.Get(ctx, resourceGroup, serviceName, "stamp", &armapimanagement.PolicyFragmentClientGetOptions{Format: to.Ptr(armapimanagement.PolicyFragmentContentFormatRawxml)})
	if err != nil {
		t.Fatal(err)
	}
	if v := deref(raw.Properties.Value); !strings.HasPrefix(v, "<fragment>") || deref(raw.Properties.Format) != armapimanagement.PolicyFragmentContentFormatRawxml {
		t.Errorf("Get (rawxml) = %q %v, want the fragment with its root", v, deref(raw.Properties.Format))
	}

	_, err = f.NewPolicyClient().CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.PolicyIDNamePolicy, armapimanagement.PolicyContract{
		Properties: &armapimanagement.PolicyContractProperties{Value: to.Ptr(`<policies><inbound><include-fragment fragment-id="stamp" /></inbound></policies>`)},
	}, nil)
	if err != nil {
		t.Fatalf("global policy including the fragment: %v", err)
	}
	refs, err := frags.ListReferences(ctx, resourceGroup, serviceName, "stamp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Value) != 1 || deref(refs.Count) != 1 || !strings.HasSuffix(deref(refs.Value[0].ID), "/service/"+serviceName+"/policies/policy") ||
		deref(refs.Value[0].Type) != "Microsoft.ApiManagement/service/policies" {
		t.Errorf("ListReferences = %+v, want the global policy", refs.ResourceCollection)
	}

	_, err = frags.Delete(ctx, resourceGroup, serviceName, "stamp", "*", nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
	if _, err := f.NewPolicyClient().Delete(ctx, resourceGroup, serviceName, armapimanagement.PolicyIDNamePolicy, "*", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := frags.Delete(ctx, resourceGroup, serviceName, "stamp", "*", nil); err != nil {
		t.Fatalf("Delete of a fragment no longer included: %v", err)
	}
	_, err = frags.Get(ctx, resourceGroup, serviceName, "stamp", nil)
	responseError(t, err, http.StatusNotFound, "ResourceNotFound")
}
