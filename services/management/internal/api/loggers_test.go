package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

func TestLoggers(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "loggers")
	const key = "instrumentation-key-that-must-stay-sealed"

	ai := c.must(http.StatusCreated, http.MethodPut, "/loggers/ai", map[string]any{"properties": map[string]any{
		"loggerType": "applicationinsights", "description": "App Insights", "credentials": map[string]any{"instrumentationKey": key},
		"isBuffered": true, "resourceId": "/subscriptions/s/resourceGroups/r/providers/microsoft.insights/components/x"}})
	placeholder := "{{Logger-Credentials--ai-instrumentationKey}}"
	want := map[string]any{"loggerType": "applicationInsights", "description": "App Insights", "isBuffered": true,
		"credentials": map[string]any{"instrumentationKey": placeholder},
		"resourceId":  "/subscriptions/s/resourceGroups/r/providers/microsoft.insights/components/x"}
	if diff := cmp.Diff(want, armProps(t, ai)); diff != "" {
		t.Errorf("logger properties (-want +got):\n%s", diff)
	}
	if got := ai.JSON()["type"]; got != "Microsoft.ApiManagement/service/loggers" {
		t.Errorf("type = %v", got)
	}
	for name, r := range map[string]mgmttest.Response{"PUT": ai, "GET": c.must(http.StatusOK, http.MethodGet, "/loggers/ai", nil),
		"list": c.must(http.StatusOK, http.MethodGet, "/loggers", nil)} {
		if strings.Contains(string(r.Body), key) {
			t.Errorf("%s shows the credential: %s", name, r.Body)
		}
	}
	// What a GET returns, sent back as a PUT, keeps the credential; another reference is refused.
	c.must(http.StatusOK, http.MethodPut, "/loggers/ai", map[string]any{"properties": armProps(t, ai)})
	wantError(t, c.do(http.MethodPut, "/loggers/other", map[string]any{"properties": map[string]any{"loggerType": "applicationInsights",
		"credentials": map[string]any{"instrumentationKey": placeholder}}}), http.StatusBadRequest, "ValidationError", "properties.credentials.instrumentationKey", "")
	wantError(t, c.do(http.MethodPut, "/loggers/other", map[string]any{"properties": map[string]any{"loggerType": "applicationInsights",
		"credentials": map[string]any{"instrumentationKey": "{{some-named-value}}"}}}), http.StatusBadRequest, "ValidationError", "properties.credentials.instrumentationKey", "named-value")

	for _, tc := range []struct {
		name, target string
		props        map[string]any
	}{
		{"no type", "properties.loggerType", map[string]any{"description": "x"}},
		{"unknown type", "properties.loggerType", map[string]any{"loggerType": "splunk"}},
		{"otlp without endpoint", "properties.credentials.endpoint", map[string]any{"loggerType": "otlp"}},
		{"otlp endpoint not http", "properties.credentials.endpoint", map[string]any{"loggerType": "otlp", "credentials": map[string]any{"endpoint": "ftp://c.example.com"}}},
		{"otlp unknown credential", "properties.credentials.token", map[string]any{"loggerType": "otlp", "credentials": map[string]any{"endpoint": "https://c.example.com", "token": "x"}}},
		{"otlp bad headers", "properties.credentials.headers", map[string]any{"loggerType": "otlp", "credentials": map[string]any{"endpoint": "https://c.example.com", "headers": "no-equals"}}},
		{"otlp endpoint link-local", "properties.credentials.endpoint", map[string]any{"loggerType": "otlp", "credentials": map[string]any{"endpoint": "http://169.254.169.254"}}},
		{"azure monitor with credentials", "properties.credentials", map[string]any{"loggerType": "azureMonitor", "credentials": map[string]any{"k": "v"}}},
		{"unknown property", "properties.sink", map[string]any{"loggerType": "azureMonitor", "sink": "x"}},
	} {
		wantError(t, c.do(http.MethodPut, "/loggers/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
	}

	// An otlp logger's credentials reach the nodes in the snapshot only.
	c.must(http.StatusCreated, http.MethodPut, "/loggers/otel", map[string]any{"properties": map[string]any{"loggerType": "otlp",
		"credentials": map[string]any{"endpoint": "https://collector.example.com/", "headers": "Authorization=Bearer t0ken"}}})
	c.must(http.StatusCreated, http.MethodPut, "/gateways/gw", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "here"}}})
	token := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/generateToken",
		map[string]any{"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)
	_, snap := gatewayConfig(t, env, token)
	if names := entityNames(snap, configwire.KindLogger); !cmp.Equal(names, []string{"ai", "otel"}) {
		t.Errorf("loggers in the snapshot: %v", names)
	}
	for _, e := range snap.Entities {
		switch {
		case e.Kind != configwire.KindLogger:
		case e.Name == "ai" && (e.Secret || e.SecretValue != "" || strings.Contains(string(e.Properties), key)):
			t.Errorf("an Application Insights logger reached the node with its credentials: %+v", e)
		case e.Name == "otel":
			var creds map[string]string
			if err := json.Unmarshal([]byte(e.SecretValue), &creds); err != nil || creds["headers"] != "Authorization=Bearer t0ken" {
				t.Errorf("otlp logger credentials in the snapshot: %q (%v)", e.SecretValue, err)
			}
		}
	}
}

func TestDiagnostics(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "diagnostics")
	c.must(http.StatusCreated, http.MethodPut, "/loggers/otel", map[string]any{"properties": map[string]any{"loggerType": "otlp",
		"credentials": map[string]any{"endpoint": "https://collector.example.com"}}})
	c.must(http.StatusCreated, http.MethodPut, "/loggers/azuremonitor", map[string]any{"properties": map[string]any{"loggerType": "azureMonitor", "isBuffered": true}})
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat", map[string]any{"properties": wsAPI("chat")})

	r := c.must(http.StatusCreated, http.MethodPut, "/diagnostics/applicationinsights", map[string]any{"properties": map[string]any{
		"loggerId": "/loggers/otel", "alwaysLog": "allErrors", "sampling": map[string]any{"samplingType": "Fixed", "percentage": 25.5},
		"logClientIp": true, "httpCorrelationProtocol": "w3c", "verbosity": "Information", "operationNameFormat": "url", "metrics": true,
		"frontend": map[string]any{"request": map[string]any{"headers": []string{"User-Agent"}, "body": map[string]any{"bytes": 512}}},
		"backend":  map[string]any{"response": map[string]any{"headers": []string{"X-Backend"}}}}})
	want := map[string]any{"loggerId": c.svc + "/loggers/otel", "alwaysLog": "allErrors",
		"sampling": map[string]any{"samplingType": "fixed", "percentage": 25.5}, "logClientIp": true,
		"httpCorrelationProtocol": "W3C", "verbosity": "information", "operationNameFormat": "Url", "metrics": true,
		"frontend": map[string]any{"request": map[string]any{"headers": []any{"User-Agent"}, "body": map[string]any{"bytes": float64(512)}}},
		"backend":  map[string]any{"response": map[string]any{"headers": []any{"X-Backend"}}}}
	if diff := cmp.Diff(want, armProps(t, r)); diff != "" {
		t.Errorf("diagnostic properties (-want +got):\n%s", diff)
	}
	api := c.must(http.StatusCreated, http.MethodPut, "/apis/chat/diagnostics/applicationinsights", map[string]any{"properties": map[string]any{
		"loggerId": c.svc + "/loggers/otel", "logClientIp": false}})
	if got := api.JSON()["type"]; got != "Microsoft.ApiManagement/service/apis/diagnostics" {
		t.Errorf("API diagnostic type = %v", got)
	}
	c.must(http.StatusCreated, http.MethodPut, "/diagnostics/azuremonitor", map[string]any{"properties": map[string]any{"loggerId": "/loggers/azuremonitor"}})
	// A non-current revision takes no diagnostic of its own: nodes apply the API's to every
	// revision, so it would be kept and never applied.
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat;rev=2", map[string]any{"properties": map[string]any{
		"sourceApiId": c.svc + "/apis/chat", "path": "chat"}})

	for _, tc := range []struct {
		name, path, target string
		props              map[string]any
	}{
		{"no logger", "/diagnostics/d", "properties.loggerId", map[string]any{}},
		{"non-current revision", "/apis/chat;rev=2/diagnostics/applicationinsights", "name", map[string]any{"loggerId": "/loggers/otel"}},
		{"missing logger", "/diagnostics/d", "properties.loggerId", map[string]any{"loggerId": "/loggers/nope"}},
		{"not a logger id", "/diagnostics/d", "properties.loggerId", map[string]any{"loggerId": "/backends/otel"}},
		{"azuremonitor to otlp", "/diagnostics/azuremonitor", "properties.loggerId", map[string]any{"loggerId": "/loggers/otel"}},
		{"sampling over 100", "/diagnostics/d", "properties.sampling.percentage", map[string]any{"loggerId": "/loggers/otel", "sampling": map[string]any{"samplingType": "fixed", "percentage": 101}}},
		{"sampling type", "/diagnostics/d", "properties.sampling.samplingType", map[string]any{"loggerId": "/loggers/otel", "sampling": map[string]any{"samplingType": "adaptive", "percentage": 1}}},
		{"verbosity", "/diagnostics/d", "properties.verbosity", map[string]any{"loggerId": "/loggers/otel", "verbosity": "debug"}},
		{"body bytes", "/diagnostics/d", "properties.frontend.request.body.bytes", map[string]any{"loggerId": "/loggers/otel", "frontend": map[string]any{"request": map[string]any{"body": map[string]any{"bytes": 9000}}}}},
		{"data masking", "/diagnostics/d", "properties.frontend.request.dataMasking", map[string]any{"loggerId": "/loggers/otel", "frontend": map[string]any{"request": map[string]any{"dataMasking": map[string]any{}}}}},
		{"bad header name", "/diagnostics/d", "properties.backend.request.headers", map[string]any{"loggerId": "/loggers/otel", "backend": map[string]any{"request": map[string]any{"headers": []string{"a b"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodPut, tc.path, map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
	wantError(t, c.do(http.MethodPut, "/apis/nope/diagnostics/d", map[string]any{"properties": map[string]any{"loggerId": "/loggers/otel"}}),
		http.StatusNotFound, "ResourceNotFound", "", "")

	// A logger in use cannot be deleted nor stop being what azuremonitor needs; once unused it can.
	wantError(t, c.do(http.MethodDelete, "/loggers/otel", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "diagnostics")
	wantError(t, c.do(http.MethodPut, "/loggers/azuremonitor", map[string]any{"properties": map[string]any{"loggerType": "applicationInsights"}}),
		http.StatusBadRequest, "ValidationError", "properties.loggerType", "")
	c.must(http.StatusOK, http.MethodDelete, "/diagnostics/applicationinsights", nil, "If-Match", "*")
	wantError(t, c.do(http.MethodDelete, "/loggers/otel", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "apis/chat/diagnostics")
	// Deleting the API deletes its diagnostics.
	c.must(http.StatusNoContent, http.MethodDelete, "/apis/chat", nil, "If-Match", "*")
	c.must(http.StatusOK, http.MethodDelete, "/loggers/otel", nil, "If-Match", "*")
}
