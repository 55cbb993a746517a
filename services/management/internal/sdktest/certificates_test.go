package sdktest

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"

	"gatehouse.dev/management/internal/mgmttest"
)

// TestSDKCertificates uploads a PFX, serves it on a gateway hostname and trusts a CA, with the
// SDK's certificate, hostname configuration and certificate authority clients.
func TestSDKCertificates(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	if _, err := f.NewGatewayClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "edge", armapimanagement.GatewayContract{
		Properties: &armapimanagement.GatewayContractProperties{LocationData: &armapimanagement.ResourceLocationDataContract{Name: to.Ptr("here")}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	certs := f.NewCertificateClient()
	ca := mgmttest.NewCert(t, "SDK CA", nil, nil)
	leaf := mgmttest.NewCert(t, "sdk.example.com", []string{"sdk.example.com"}, ca)
	for name, c := range map[string]*mgmttest.Cert{"ca": ca, "sdk-tls": leaf} {
		got, err := certs.CreateOrUpdate(ctx, resourceGroup, serviceName, name, armapimanagement.CertificateCreateOrUpdateParameters{
			Properties: &armapimanagement.CertificateCreateOrUpdateProperties{Data: to.Ptr(c.PFX(t, "pw")), Password: to.Ptr("pw")},
		}, nil)
		if err != nil {
			t.Fatalf("CreateOrUpdate certificate %s: %v", name, err)
		}
		p := deref(got.Properties)
		if deref(p.Subject) != c.Cert.Subject.String() || !deref(p.ExpirationDate).Equal(c.Cert.NotAfter.Truncate(1e9)) || len(deref(p.Thumbprint)) != 40 {
			t.Errorf("certificate %s = subject %q expiry %v thumbprint %q", name, deref(p.Subject), deref(p.ExpirationDate), deref(p.Thumbprint))
		}
	}
	_, err := certs.CreateOrUpdate(ctx, resourceGroup, serviceName, "kv", armapimanagement.CertificateCreateOrUpdateParameters{
		Properties: &armapimanagement.CertificateCreateOrUpdateProperties{KeyVault: &armapimanagement.KeyVaultContractCreateProperties{
			SecretIdentifier: to.Ptr("https://kv.vault.azure.net/secrets/c")}},
	}, nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
	_, err = certs.RefreshSecret(ctx, resourceGroup, serviceName, "sdk-tls", nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
	n := 0
	for pager := certs.NewListByServicePager(resourceGroup, serviceName, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 {
		t.Errorf("listed %d certificates, want 2", n)
	}

	hosts := f.NewGatewayHostnameConfigurationClient()
	certID := "/subscriptions/" + subscriptionID + "/resourceGroups/" + resourceGroup + "/providers/Microsoft.ApiManagement/service/" + serviceName + "/certificates/sdk-tls"
	h, err := hosts.CreateOrUpdate(ctx, resourceGroup, serviceName, "edge", "sdk", armapimanagement.GatewayHostnameConfigurationContract{
		Properties: &armapimanagement.GatewayHostnameConfigurationContractProperties{Hostname: to.Ptr("sdk.example.com"), CertificateID: to.Ptr(certID),
			NegotiateClientCertificate: to.Ptr(true), Tls10Enabled: to.Ptr(false), Tls11Enabled: to.Ptr(false), HTTP2Enabled: to.Ptr(false)},
	}, nil)
	if err != nil {
		t.Fatalf("CreateOrUpdate hostname configuration: %v", err)
	}
	if p := deref(h.Properties); deref(p.Hostname) != "sdk.example.com" || deref(p.CertificateID) != certID || !deref(p.NegotiateClientCertificate) {
		t.Errorf("hostname configuration = %+v", p)
	}
	_, err = hosts.CreateOrUpdate(ctx, resourceGroup, serviceName, "edge", "old", armapimanagement.GatewayHostnameConfigurationContract{
		Properties: &armapimanagement.GatewayHostnameConfigurationContractProperties{Hostname: to.Ptr("old.example.com"), CertificateID: to.Ptr(certID),
			Tls11Enabled: to.Ptr(true)},
	}, nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
	tag, err := hosts.GetEntityTag(ctx, resourceGroup, serviceName, "edge", "sdk", nil)
	if err != nil || deref(tag.ETag) == "" {
		t.Fatalf("GetEntityTag hostname configuration: %v %q", err, deref(tag.ETag))
	}

	cas := f.NewGatewayCertificateAuthorityClient()
	if _, err := cas.CreateOrUpdate(ctx, resourceGroup, serviceName, "edge", "ca", armapimanagement.GatewayCertificateAuthorityContract{
		Properties: &armapimanagement.GatewayCertificateAuthorityContractProperties{IsTrusted: to.Ptr(true)},
	}, nil); err != nil {
		t.Fatalf("CreateOrUpdate certificate authority: %v", err)
	}
	got, err := cas.Get(ctx, resourceGroup, serviceName, "edge", "ca", nil)
	if err != nil || !deref(deref(got.Properties).IsTrusted) {
		t.Fatalf("Get certificate authority = %+v, %v", got.Properties, err)
	}
	listed := 0
	for pager := cas.NewListByServicePager(resourceGroup, serviceName, "edge", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(page.Value)
	}
	if listed != 1 {
		t.Errorf("listed %d certificate authorities, want 1", listed)
	}

	_, err = certs.Delete(ctx, resourceGroup, serviceName, "ca", "*", nil)
	responseError(t, err, http.StatusConflict, "Conflict")
	if _, err := cas.Delete(ctx, resourceGroup, serviceName, "edge", "ca", "*", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := hosts.Delete(ctx, resourceGroup, serviceName, "edge", "sdk", deref(tag.ETag), nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca", "sdk-tls"} {
		if _, err := certs.Delete(ctx, resourceGroup, serviceName, name, "*", nil); err != nil {
			t.Fatalf("Delete certificate %s: %v", name, err)
		}
	}
}
