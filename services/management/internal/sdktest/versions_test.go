package sdktest

import (
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKVersionsAndRevisions drives version sets, versions, revisions and releases through
// the SDK's APIVersionSetClient, APIClient, APIRevisionClient and APIReleaseClient as a
// template would: a Header version set, an API version in it, revision 2 created from the API,
// listed, and released, after which the API answers as revision 2.
func TestSDKVersionsAndRevisions(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	svc := createService(t, ctx, f)

	set, err := f.NewAPIVersionSetClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.APIVersionSetContract{
		Properties: &armapimanagement.APIVersionSetContractProperties{DisplayName: to.Ptr("Chat"),
			VersioningScheme: to.Ptr(armapimanagement.VersioningSchemeHeader), VersionHeaderName: to.Ptr("Api-Version")},
	}, nil)
	if err != nil {
		t.Fatalf("APIVersionSetClient.CreateOrUpdate: %v", err)
	}
	if deref(set.Type) != "Microsoft.ApiManagement/service/api-version-sets" || deref(set.Properties.VersioningScheme) != armapimanagement.VersioningSchemeHeader {
		t.Errorf("version set = %s %+v", deref(set.Type), set.Properties)
	}
	setID := deref(svc.ID) + "/apiVersionSets/chat"

	apis := f.NewAPIClient()
	poller, err := apis.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat-v2", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{
			DisplayName: to.Ptr("Chat"), Path: to.Ptr("chat"), ServiceURL: to.Ptr("wss://chat.backend.example/v2"),
			APIType: to.Ptr(armapimanagement.APITypeWebsocket), Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)},
			APIVersion: to.Ptr("v2"), APIVersionSetID: to.Ptr(setID),
		},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate chat-v2: %v", err)
	}
	api, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(api.Properties.APIVersionSetID) != setID || deref(api.Properties.APIVersion) != "v2" {
		t.Errorf("the API's version fields = %q %q, want %q v2", deref(api.Properties.APIVersionSetID), deref(api.Properties.APIVersion), setID)
	}

	poller, err = apis.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat-v2;rev=2", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{
			Path: to.Ptr("chat"), SourceAPIID: api.ID, ServiceURL: to.Ptr("wss://chat.backend.example/v2-rev2"),
			APIRevisionDescription: to.Ptr("a new backend"),
		},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate chat-v2;rev=2: %v", err)
	}
	rev, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(rev.Name) != "chat-v2;rev=2" || deref(rev.Properties.APIRevision) != "2" || deref(rev.Properties.IsCurrent) {
		t.Errorf("revision = %s %+v", deref(rev.Name), rev.Properties)
	}

	var revs []string
	pager := f.NewAPIRevisionClient().NewListByServicePager(resourceGroup, serviceName, "chat-v2", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("APIRevisionClient list: %v", err)
		}
		for _, r := range page.Value {
			revs = append(revs, deref(r.APIID)+" current="+map[bool]string{true: "yes", false: "no"}[deref(r.IsCurrent)])
		}
	}
	if want := []string{"/apis/chat-v2;rev=1 current=yes", "/apis/chat-v2;rev=2 current=no"}; !slices.Equal(revs, want) {
		t.Errorf("revisions = %v, want %v", revs, want)
	}

	release, err := f.NewAPIReleaseClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "chat-v2", "go-live", armapimanagement.APIReleaseContract{
		Properties: &armapimanagement.APIReleaseContractProperties{APIID: rev.ID, Notes: to.Ptr("revision 2 goes live")},
	}, nil)
	if err != nil {
		t.Fatalf("APIReleaseClient.CreateOrUpdate: %v", err)
	}
	if deref(release.Properties.Notes) != "revision 2 goes live" || release.Properties.CreatedDateTime == nil {
		t.Errorf("release = %+v", release.Properties)
	}
	cur, err := apis.Get(ctx, resourceGroup, serviceName, "chat-v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(cur.Properties.APIRevision) != "2" || deref(cur.Properties.ServiceURL) != "wss://chat.backend.example/v2-rev2" || deref(cur.Properties.APIVersion) != "v2" {
		t.Errorf("after the release the API = %+v", cur.Properties)
	}
}
