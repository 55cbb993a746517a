package sdktest

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKPortalSettings drives the portal settings (sign-in, sign-up, delegation with its
// listSecrets) and an identity provider's lifecycle with the Azure SDK for Go, as a template
// tool applying a developer portal's configuration does.
func TestSDKPortalSettings(t *testing.T) {
	t.Parallel()
	_, f := newFactory(t)
	ctx := context.Background()
	createService(t, ctx, f)

	signin := f.NewSignInSettingsClient()
	if _, err := signin.CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.PortalSigninSettings{
		Properties: &armapimanagement.PortalSigninSettingProperties{Enabled: to.Ptr(true)}}, nil); err != nil {
		t.Fatalf("sign-in CreateOrUpdate: %v", err)
	}
	if got, err := signin.Get(ctx, resourceGroup, serviceName, nil); err != nil || !deref(got.Properties.Enabled) {
		t.Fatalf("sign-in Get = %+v, %v; want enabled", got.Properties, err)
	}
	if _, err := signin.GetEntityTag(ctx, resourceGroup, serviceName, nil); err != nil {
		t.Fatalf("sign-in GetEntityTag: %v", err)
	}

	signup := f.NewSignUpSettingsClient()
	if _, err := signup.CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.PortalSignupSettings{
		Properties: &armapimanagement.PortalSignupSettingsProperties{Enabled: to.Ptr(true)}}, nil); err == nil {
		t.Fatal("sign-up enabled was accepted; Gatehouse's portal has no self sign-up")
	} else {
		responseError(t, err, 400, "ValidationError")
	}
	if _, err := signup.Update(ctx, resourceGroup, serviceName, "*", armapimanagement.PortalSignupSettings{
		Properties: &armapimanagement.PortalSignupSettingsProperties{TermsOfService: &armapimanagement.TermsOfServiceProperties{
			Text: to.Ptr("Be kind."), Enabled: to.Ptr(true), ConsentRequired: to.Ptr(true)}}}, nil); err != nil {
		t.Fatalf("sign-up Update: %v", err)
	}
	if got, err := signup.Get(ctx, resourceGroup, serviceName, nil); err != nil || deref(got.Properties.TermsOfService.Text) != "Be kind." {
		t.Fatalf("sign-up Get = %+v, %v; want the terms of service written", got.Properties, err)
	}

	const key = "dmFsaWRhdGlvbi1rZXk="
	delegation := f.NewDelegationSettingsClient()
	if _, err := delegation.CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.PortalDelegationSettings{
		Properties: &armapimanagement.PortalDelegationSettingsProperties{URL: to.Ptr("https://portal.example.com/delegate"), ValidationKey: to.Ptr(key)}}, nil); err != nil {
		t.Fatalf("delegation CreateOrUpdate: %v", err)
	}
	got, err := delegation.Get(ctx, resourceGroup, serviceName, nil)
	if err != nil || deref(got.Properties.URL) != "https://portal.example.com/delegate" || got.Properties.ValidationKey != nil {
		t.Fatalf("delegation Get = %+v, %v; want the url and no validation key", got.Properties, err)
	}
	if secrets, err := delegation.ListSecrets(ctx, resourceGroup, serviceName, nil); err != nil || deref(secrets.ValidationKey) != key {
		t.Fatalf("delegation ListSecrets = %v, %v; want the key written", deref(secrets.ValidationKey), err)
	}
	if list, err := f.NewPortalSettingsClient().ListByService(ctx, resourceGroup, serviceName, nil); err != nil || len(list.Value) != 3 {
		t.Fatalf("portal settings ListByService = %d settings, %v; want 3", len(list.Value), err)
	}

	idp := f.NewIdentityProviderClient()
	const secret = "aad-client-secret"
	if _, err := idp.CreateOrUpdate(ctx, resourceGroup, serviceName, armapimanagement.IdentityProviderTypeAAD, armapimanagement.IdentityProviderCreateContract{
		Properties: &armapimanagement.IdentityProviderCreateContractProperties{ClientID: to.Ptr("app"), ClientSecret: to.Ptr(secret),
			AllowedTenants: []*string{to.Ptr("contoso.onmicrosoft.com")}, SigninTenant: to.Ptr("contoso.onmicrosoft.com")}}, nil); err != nil {
		t.Fatalf("identity provider CreateOrUpdate: %v", err)
	}
	if _, err := idp.Update(ctx, resourceGroup, serviceName, armapimanagement.IdentityProviderTypeAAD, "*", armapimanagement.IdentityProviderUpdateParameters{
		Properties: &armapimanagement.IdentityProviderUpdateProperties{ClientID: to.Ptr("app-2")}}, nil); err != nil {
		t.Fatalf("identity provider Update: %v", err)
	}
	p, err := idp.Get(ctx, resourceGroup, serviceName, armapimanagement.IdentityProviderTypeAAD, nil)
	if err != nil || deref(p.Properties.ClientID) != "app-2" || p.Properties.ClientSecret != nil || deref(p.Properties.Type) != armapimanagement.IdentityProviderTypeAAD {
		t.Fatalf("identity provider Get = %+v, %v; want clientId app-2, type aad and no secret", p.Properties, err)
	}
	if s, err := idp.ListSecrets(ctx, resourceGroup, serviceName, armapimanagement.IdentityProviderTypeAAD, nil); err != nil || deref(s.ClientSecret) != secret {
		t.Fatalf("identity provider ListSecrets = %v, %v; want the secret written", deref(s.ClientSecret), err)
	}
	var names []string
	pager := idp.NewListByServicePager(resourceGroup, serviceName, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("identity providers: %v", err)
		}
		for _, v := range page.Value {
			names = append(names, deref(v.Name))
		}
	}
	if len(names) != 1 || names[0] != "aad" {
		t.Errorf("identity providers = %v, want [aad]", names)
	}
	if _, err := idp.Delete(ctx, resourceGroup, serviceName, armapimanagement.IdentityProviderTypeAAD, "*", nil); err != nil {
		t.Fatalf("identity provider Delete: %v", err)
	}
}
