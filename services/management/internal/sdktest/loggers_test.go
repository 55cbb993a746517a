package sdktest

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/apimanagement/armapimanagement/v3"
)

// TestSDKLoggersAndDiagnostics drives loggers and diagnostics through the SDK's LoggerClient,
// DiagnosticClient and APIDiagnosticClient as a template would: an Application Insights
// logger (stored only) whose key reads back as a placeholder, Gatehouse's otlp logger (a
// string the SDK's LoggerType carries as it is), a service diagnostic, an API diagnostic
// overriding it, the lists, and a logger in use refused deletion.
func TestSDKLoggersAndDiagnostics(t *testing.T) {
	_, f := newFactory(t)
	ctx := t.Context()
	svc := createService(t, ctx, f)
	loggers := f.NewLoggerClient()

	const key = "00000000-1111-2222-3333-444444444444"
	ai, err := loggers.CreateOrUpdate(ctx, resourceGroup, serviceName, "appinsights", armapimanagement.LoggerContract{
		Properties: &armapimanagement.LoggerContractProperties{LoggerType: to.Ptr(armapimanagement.LoggerTypeApplicationInsights),
			Description: to.Ptr("App Insights"), Credentials: map[string]*string{"instrumentationKey": to.Ptr(key)}, IsBuffered: to.Ptr(true)},
	}, nil)
	if err != nil {
		t.Fatalf("LoggerClient.CreateOrUpdate appinsights: %v", err)
	}
	if got := deref(ai.Properties.Credentials["instrumentationKey"]); got != "{{Logger-Credentials--appinsights-instrumentationKey}}" {
		t.Errorf("instrumentationKey reads back as %q, want its placeholder", got)
	}
	otel, err := loggers.CreateOrUpdate(ctx, resourceGroup, serviceName, "otel", armapimanagement.LoggerContract{
		Properties: &armapimanagement.LoggerContractProperties{LoggerType: to.Ptr(armapimanagement.LoggerType("otlp")),
			Credentials: map[string]*string{"endpoint": to.Ptr("https://collector.example.com")}},
	}, nil)
	if err != nil {
		t.Fatalf("LoggerClient.CreateOrUpdate otel: %v", err)
	}
	if got := deref(otel.Properties.LoggerType); got != "otlp" {
		t.Errorf("loggerType = %q", got)
	}
	var names []string
	for pager := loggers.NewListByServicePager(resourceGroup, serviceName, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("LoggerClient list: %v", err)
		}
		for _, l := range page.Value {
			names = append(names, deref(l.Name))
			if strings.Contains(deref(l.Properties.Credentials["instrumentationKey"]), key) {
				t.Errorf("the list shows the instrumentation key")
			}
		}
	}
	if strings.Join(names, ",") != "appinsights,otel" {
		t.Errorf("loggers = %v", names)
	}

	diag, err := f.NewDiagnosticClient().CreateOrUpdate(ctx, resourceGroup, serviceName, "applicationinsights", armapimanagement.DiagnosticContract{
		Properties: &armapimanagement.DiagnosticContractProperties{LoggerID: otel.ID,
			AlwaysLog: to.Ptr(armapimanagement.AlwaysLogAllErrors), LogClientIP: to.Ptr(true),
			Sampling:  &armapimanagement.SamplingSettings{SamplingType: to.Ptr(armapimanagement.SamplingTypeFixed), Percentage: to.Ptr(50.0)},
			Verbosity: to.Ptr(armapimanagement.VerbosityInformation), HTTPCorrelationProtocol: to.Ptr(armapimanagement.HTTPCorrelationProtocolW3C),
			Frontend: &armapimanagement.PipelineDiagnosticSettings{Request: &armapimanagement.HTTPMessageDiagnostic{
				Headers: []*string{to.Ptr("User-Agent")}, Body: &armapimanagement.BodyDiagnosticSettings{Bytes: to.Ptr[int32](0)}}},
		},
	}, nil)
	if err != nil {
		t.Fatalf("DiagnosticClient.CreateOrUpdate: %v", err)
	}
	if deref(diag.Properties.LoggerID) != deref(otel.ID) || deref(diag.Properties.Sampling.Percentage) != 50 {
		t.Errorf("diagnostic = %+v", diag.Properties)
	}
	if _, err := f.NewDiagnosticClient().Get(ctx, resourceGroup, serviceName, "applicationinsights", nil); err != nil {
		t.Errorf("DiagnosticClient.Get: %v", err)
	}

	apis := f.NewAPIClient()
	poller, err := apis.BeginCreateOrUpdate(ctx, resourceGroup, serviceName, "chat", armapimanagement.APICreateOrUpdateParameter{
		Properties: &armapimanagement.APICreateOrUpdateProperties{DisplayName: to.Ptr("Chat"), Path: to.Ptr("chat"),
			ServiceURL: to.Ptr("wss://chat.backend.example"), APIType: to.Ptr(armapimanagement.APITypeWebsocket),
			Protocols: []*armapimanagement.Protocol{to.Ptr(armapimanagement.ProtocolWss)}},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate chat: %v", err)
	}
	if _, err := poller.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	apiDiags := f.NewAPIDiagnosticClient()
	ad, err := apiDiags.CreateOrUpdate(ctx, resourceGroup, serviceName, "chat", "applicationinsights", armapimanagement.DiagnosticContract{
		Properties: &armapimanagement.DiagnosticContractProperties{LoggerID: to.Ptr("/loggers/otel"), LogClientIP: to.Ptr(false)},
	}, nil)
	if err != nil {
		t.Fatalf("APIDiagnosticClient.CreateOrUpdate: %v", err)
	}
	if want := deref(svc.ID) + "/apis/chat/diagnostics/applicationinsights"; deref(ad.ID) != want || deref(ad.Properties.LogClientIP) {
		t.Errorf("API diagnostic = %s %+v, want id %s and logClientIp false", deref(ad.ID), ad.Properties, want)
	}
	page, err := apiDiags.NewListByServicePager(resourceGroup, serviceName, "chat", nil).NextPage(ctx)
	if err != nil || len(page.Value) != 1 {
		t.Fatalf("APIDiagnosticClient list: %d, %v", len(page.Value), err)
	}

	_, err = loggers.Delete(ctx, resourceGroup, serviceName, "otel", "*", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict {
		t.Errorf("deleting a logger in use: %v, want 409", err)
	}
	if _, err := apiDiags.Delete(ctx, resourceGroup, serviceName, "chat", "applicationinsights", "*", nil); err != nil {
		t.Fatalf("APIDiagnosticClient.Delete: %v", err)
	}
	if _, err := f.NewDiagnosticClient().Delete(ctx, resourceGroup, serviceName, "applicationinsights", "*", nil); err != nil {
		t.Fatalf("DiagnosticClient.Delete: %v", err)
	}
	if _, err := loggers.Delete(ctx, resourceGroup, serviceName, "otel", "*", nil); err != nil {
		t.Errorf("deleting the unused logger: %v", err)
	}
}
