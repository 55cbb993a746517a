package sdktest

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// ordersOpenAPI is an OpenAPI 3 description with two operations and a component schema.
const ordersOpenAPI = `{"openapi": "3.0.1", "info": {"title": "Orders", "version": "1"},
  "servers": [{"url": "https://orders.backend.example/api"}],
  "paths": {"/orders": {"post": {"operationId": "createOrder", "summary": "Create an order",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
      "responses": {"201": {"description": "created"}}}},
    "/orders/{id}": {"get": {"operationId": "getOrder", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "the order"}}}}},
  "components": {"schemas": {"Order": {"type": "object"}}}}`

// TestSDKImportExportAndSchemas imports an OpenAPI description with APIClient.BeginCreateOrUpdate
// (Format, Value), lists the operations it created, exports it with APIExportClient.Get and
// fetches the link, and drives the API's schemas through APISchemaClient.
func TestSDKImportExportAndSchemas(t *testing.T) {
	env, f := newFactory(t)
	ctx := t.Context()
	createService(t, ctx, f)

	poller, err := f.NewAPIClient().BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "orders", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{Path: to.Ptr("orders"),
			Format: to.Ptr(armapimanagement.ContentFormatOpenapiJSON), Value: to.Ptr(ordersOpenAPI)},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate with an import: %v", err)
	}
	api, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(api.Properties.DisplayName) != "Orders" || deref(api.Properties.ServiceURL) != "https://orders.backend.example/api" {
		t.Errorf("imported API = %+v", api.Properties)
	}
	var ops []string
	pager := f.NewAPIOperationClient().NewListByAPIPager(resourceGroup, serviceName, "orders", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Value {
			ops = append(ops, deref(o.Name)+" "+deref(o.Properties.Method)+" "+deref(o.Properties.URLTemplate))
		}
	}
	slices.Sort(ops)
	if want := []string{"createorder POST /orders", "getorder GET /orders/{id}"}; !slices.Equal(ops, want) {
		t.Errorf("operations = %v, want %v", ops, want)
	}

	exp, err := f.NewAPIExportClient().Get(ctx, resourceGroup, serviceName, "orders", armapimanagement.ExportFormatOpenapiJSON, armapimanagement.ExportAPITrue, nil)
	if err != nil {
		t.Fatalf("APIExportClient.Get: %v", err)
	}
	if exp.Value == nil || deref(exp.Value.Link) == "" || !strings.HasSuffix(deref(exp.ID), "/apis/orders") {
		t.Fatalf("export = %+v", exp.APIExportResult)
	}
	resp, err := env.Client.Get(deref(exp.Value.Link))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(doc), `"operationId":"getorder"`) {
		t.Errorf("export link: %d %s", resp.StatusCode, doc)
	}

	schemas := f.NewAPISchemaClient()
	var names []string
	spager := schemas.NewListByAPIPager(resourceGroup, serviceName, "orders", nil)
	for spager.More() {
		page, err := spager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Value {
			if deref(s.Properties.ContentType) == "application/vnd.oai.openapi.components+json" {
				names = append(names, deref(s.Name))
			}
		}
	}
	if len(names) != 1 {
		t.Errorf("the import's components schema: %v", names)
	}
	sp, err := schemas.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "orders", "xsd", armapimanagement.SchemaContract{
		Properties: &armapimanagement.SchemaContractProperties{ContentType: to.Ptr("application/vnd.ms-azure-apim.xsd+xml"),
			Document: &armapimanagement.SchemaDocumentProperties{Value: to.Ptr("<xs:schema/>")}},
	}, nil)
	if err != nil {
		t.Fatalf("APISchemaClient.BeginCreateOrUpdate: %v", err)
	}
	if _, err := sp.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	got, err := schemas.Get(ctx, resourceGroup, serviceName, "orders", "xsd", nil)
	if err != nil || deref(got.Properties.Document.Value) != "<xs:schema/>" {
		t.Fatalf("APISchemaClient.Get: %+v %v", got, err)
	}
	if _, err := schemas.Delete(ctx, resourceGroup, serviceName, "orders", "xsd", "*", nil); err != nil {
		t.Fatalf("APISchemaClient.Delete: %v", err)
	}
}
