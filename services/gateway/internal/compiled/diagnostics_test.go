package compiled

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/configwire"
)

// diagView is what a test compares of the diagnostics that apply to an API.
type diagView struct {
	ID, Logger, Export string
	Percentage         float64
	ClientIP           bool
	Headers            []string
}

func diagsOf(c *Config, api string) []diagView {
	var out []diagView
	for _, d := range c.Diagnostics(api) {
		v := diagView{ID: d.ID, Logger: d.Logger, Percentage: d.Percentage, ClientIP: d.ClientIP, Headers: d.FrontendRequest}
		if d.Export != nil {
			v.Export = d.Export.URL
		}
		out = append(out, v)
	}
	return out
}

func TestDiagnostics(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	snap.Entities = append(snap.Entities,
		configwire.Entity{Kind: configwire.KindLogger, Name: "otel", Properties: raw(obj{"loggerType": "otlp"}), Secret: true,
			SecretValue: `{"endpoint":"http://collector.internal:4318"}`},
		ent(configwire.KindLogger, "", "azuremonitor", obj{"loggerType": "azureMonitor"}),
		ent(configwire.KindDiagnostic, "", "applicationinsights", obj{"loggerId": svcARM + "/loggers/otel", "logClientIp": true,
			"sampling": obj{"samplingType": "fixed", "percentage": 50}}),
		ent(configwire.KindDiagnostic, "", "azuremonitor", obj{"loggerId": svcARM + "/loggers/azuremonitor"}),
		ent(configwire.KindDiagnostic, "apis/chat", "applicationinsights", obj{"loggerId": svcARM + "/loggers/otel",
			"frontend": obj{"request": obj{"headers": []string{"User-Agent"}}}}),
	)
	b, cfg := load(t, snap)
	service := []diagView{
		{ID: "applicationinsights", Logger: "otel", Export: "http://collector.internal:4318/v1/logs", Percentage: 50, ClientIP: true},
		{ID: "azuremonitor", Logger: "azuremonitor", Percentage: 100},
	}
	if diff := cmp.Diff(service, diagsOf(cfg, "orders")); diff != "" {
		t.Errorf("orders (the service's diagnostics) (-want +got):\n%s", diff)
	}
	chat := []diagView{
		{ID: "applicationinsights", Logger: "otel", Export: "http://collector.internal:4318/v1/logs", Percentage: 100, Headers: []string{"User-Agent"}},
		{ID: "azuremonitor", Logger: "azuremonitor", Percentage: 100},
	}
	if diff := cmp.Diff(chat, diagsOf(cfg, "Chat")); diff != "" {
		t.Errorf("chat (its own overrides the service's of the same id) (-want +got):\n%s", diff)
	}

	// A diagnostic change applies in place; the API's own going away restores the service's.
	cfg, err := b.Apply(change(testRevision+1, del(configwire.KindDiagnostic, "apis/chat", "applicationinsights"),
		put(ent(configwire.KindDiagnostic, "", "azuremonitor", obj{"loggerId": svcARM + "/loggers/azuremonitor", "logClientIp": true}))))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	service[1].ClientIP = true
	if diff := cmp.Diff(service, diagsOf(cfg, "chat")); diff != "" {
		t.Errorf("chat after the change (-want +got):\n%s", diff)
	}
	// New credentials of an otlp logger come with a snapshot only.
	_, err = b.Apply(change(testRevision+2, put(configwire.Entity{Kind: configwire.KindLogger, Name: "otel",
		Properties: raw(obj{"loggerType": "otlp"}), Secret: true})))
	if !errors.Is(err, ErrResync) {
		t.Errorf("an otlp logger's change: %v, want ErrResync", err)
	}
}
