package sdktest

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// TestSDKBackendClientCertificates creates a backend presenting an uploaded certificate by
// its ARM id and reads it back through the unmodified Azure SDK for Go; the certificate then
// cannot be deleted, and an unknown certificate id is the SDK's ResponseError.
func TestSDKBackendClientCertificates(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)
	cert, err := f.NewCertificateClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "client", armapimanagement.CertificateCreateOrUpdateParameters{
		Properties: &armapimanagement.CertificateCreateOrUpdateProperties{Data: to.Ptr(mgmttest.NewCert(t, "sdk-client", nil, nil).PFX(t, "pw")), Password: to.Ptr("pw")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bc := f.NewBackendClient()
	props := &armapimanagement.BackendContractProperties{URL: to.Ptr("wss://mtls.example.com/hub"), Protocol: to.Ptr(armapimanagement.BackendProtocolHTTP),
		Credentials: &armapimanagement.BackendCredentialsContract{CertificateIDs: []*string{cert.ID}}}
	if _, err := bc.CreateOrUpdate(ctx, resourceGroup, serviceName, "mtls", armapimanagement.BackendContract{Properties: props}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := bc.Get(ctx, resourceGroup, serviceName, "mtls", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, id := range deref(deref(got.Properties).Credentials).CertificateIDs {
		ids = append(ids, deref(id))
	}
	if diff := cmp.Diff([]string{deref(cert.ID)}, ids); diff != "" {
		t.Errorf("certificateIds read back (-want +got):\n%s", diff)
	}
	_, err = f.NewCertificateClient().Delete(ctx, resourceGroup, serviceName, "client", "*", nil)
	responseError(t, err, http.StatusConflict, "Conflict")
	props.Credentials.CertificateIDs = []*string{to.Ptr("ghost")}
	_, err = bc.CreateOrUpdate(ctx, resourceGroup, serviceName, "ghost", armapimanagement.BackendContract{Properties: props}, nil)
	responseError(t, err, http.StatusBadRequest, "ValidationError")
}
