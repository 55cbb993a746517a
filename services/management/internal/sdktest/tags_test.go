package sdktest

import (
	"context"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKTagsAndGroups drives tags and groups through the SDK's TagClient,
// APITagDescriptionClient, TagResourceClient, APIClient.NewListByTagsPager, GroupClient,
// GroupUserClient, UserGroupClient and ProductGroupClient as a template would.
func TestSDKTagsAndGroups(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	poller, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{DisplayName: to.Ptr("Chat"), Path: to.Ptr("chat"),
			ServiceURL: to.Ptr("wss://chat.backend.example"), APIType: to.Ptr(armapimanagement.APITypeWebsocket),
			Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}

	tags := f.NewTagClient()
	if _, err := tags.CreateOrUpdate(ctx, resourceGroup, serviceName, "live", armapimanagement.TagCreateUpdateParameters{
		Properties: &armapimanagement.TagContractProperties{DisplayName: to.Ptr("Live")}}, nil); err != nil {
		t.Fatalf("TagClient.CreateOrUpdate: %v", err)
	}
	assigned, err := tags.AssignToAPI(ctx, resourceGroup, serviceName, "chat", "live", nil)
	if err != nil || deref(assigned.Properties.DisplayName) != "Live" {
		t.Fatalf("TagClient.AssignToAPI: %v %+v", err, assigned.Properties)
	}
	if _, err := tags.GetEntityStateByAPI(ctx, resourceGroup, serviceName, "chat", "live", nil); err != nil {
		t.Errorf("TagClient.GetEntityStateByAPI: %v", err)
	}
	var apiTags []string
	for p := tags.NewListByAPIPager(resourceGroup, serviceName, "chat", nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("TagClient.NewListByAPIPager: %v", err)
		}
		for _, v := range page.Value {
			apiTags = append(apiTags, deref(v.Name))
		}
	}
	if !slices.Equal(apiTags, []string{"live"}) {
		t.Errorf("the API's tags = %v, want [live]", apiTags)
	}

	desc, err := f.NewAPITagDescriptionClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "chat", "live", armapimanagement.TagDescriptionCreateParameters{
		Properties: &armapimanagement.TagDescriptionBaseProperties{Description: to.Ptr("Live data"), ExternalDocsURL: to.Ptr("https://docs.example.com/live")}}, nil)
	if err != nil || deref(desc.Properties.DisplayName) != "Live" || deref(desc.Properties.TagID) == "" {
		t.Errorf("APITagDescriptionClient.CreateOrUpdate: %v %+v", err, desc.Properties)
	}

	page, err := f.NewAPIClient().NewListByTagsPager(resourceGroup, serviceName, &armapimanagement.APIClientListByTagsOptions{
		IncludeNotTaggedApis: to.Ptr(true)}).NextPage(ctx)
	if err != nil || len(page.Value) != 1 || deref(page.Value[0].Tag.ID) != "/tags/live" || deref(page.Value[0].API.ID) != "/apis/chat" {
		t.Errorf("APIClient.NewListByTagsPager: %v %+v", err, page.Value)
	}
	res, err := f.NewTagResourceClient().NewListByServicePager(resourceGroup, serviceName, nil).NextPage(ctx)
	if err != nil || len(res.Value) != 1 || deref(res.Value[0].API.Name) != "Chat" {
		t.Errorf("TagResourceClient.NewListByServicePager: %v %+v", err, res.Value)
	}

	testSDKGroups(t, ctx, f)
}

// testSDKGroups drives the group clients: a custom group with a user, visible to a product.
func testSDKGroups(t *testing.T, ctx context.Context, f *armapimanagement.ClientFactory) {
	groups := f.NewGroupClient()
	dev, err := groups.Get(ctx, resourceGroup, serviceName, "developers", nil)
	if err != nil || !deref(dev.Properties.BuiltIn) || deref(dev.Properties.Type) != armapimanagement.GroupTypeSystem {
		t.Errorf("GroupClient.Get developers: %v %+v", err, dev.Properties)
	}
	g, err := groups.CreateOrUpdate(ctx, resourceGroup, serviceName, "partners", armapimanagement.GroupCreateParameters{
		Properties: &armapimanagement.GroupCreateParametersProperties{DisplayName: to.Ptr("Partners"), Description: to.Ptr("Our partners")}}, nil)
	if err != nil || deref(g.Properties.Type) != armapimanagement.GroupTypeCustom {
		t.Fatalf("GroupClient.CreateOrUpdate: %v %+v", err, g.Properties)
	}
	if _, err := f.NewUserClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "ann", armapimanagement.UserCreateParameters{
		Properties: &armapimanagement.UserCreateParameterProperties{Email: to.Ptr("ann@example.com"), FirstName: to.Ptr("Ann"), LastName: to.Ptr("A")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewGroupUserClient().Create(ctx, resourceGroup, serviceName, "partners", "ann", nil); err != nil {
		t.Fatalf("GroupUserClient.Create: %v", err)
	}
	if ok, err := f.NewGroupUserClient().CheckEntityExists(ctx, resourceGroup, serviceName, "partners", "ann", nil); err != nil || !ok.Success {
		t.Errorf("GroupUserClient.CheckEntityExists: %v %v", err, ok.Success)
	}
	ug, err := f.NewUserGroupClient().NewListPager(resourceGroup, serviceName, "ann", nil).NextPage(ctx)
	var names []string
	for _, v := range ug.Value {
		names = append(names, deref(v.Name))
	}
	if err != nil || !slices.Equal(names, []string{"developers", "partners"}) {
		t.Errorf("UserGroupClient.NewListPager: %v %v", err, names)
	}
	if _, err := f.NewProductClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "gold", armapimanagement.ProductContract{
		Properties: &armapimanagement.ProductContractProperties{DisplayName: to.Ptr("Gold")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewProductGroupClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "gold", "partners", nil); err != nil {
		t.Fatalf("ProductGroupClient.CreateOrUpdate: %v", err)
	}
	if ok, err := f.NewProductGroupClient().CheckEntityExists(ctx, resourceGroup, serviceName, "gold", "partners", nil); err != nil || !ok.Success {
		t.Errorf("ProductGroupClient.CheckEntityExists: %v %v", err, ok.Success)
	}
	if _, err := groups.Delete(ctx, resourceGroup, serviceName, "administrators", "*", nil); err == nil {
		t.Error("GroupClient.Delete administrators succeeded; a built-in group must not be deletable")
	}
}
