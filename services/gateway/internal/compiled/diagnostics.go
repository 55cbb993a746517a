package compiled

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/diagnostic"
)

// Diagnostic is one diagnostic as it applies to the connection records of an API (issue 15,
// docs/observability.md): the API's own of an id, else the service's of that id.
type Diagnostic struct {
	// ID is the diagnostic's id ("applicationinsights"), Logger its logger's name.
	ID, Logger string
	// Percentage is the share of records kept (0–100); AllErrors keeps the records of
	// sessions that ended in error whatever the sampling.
	Percentage float64
	AllErrors  bool
	// ClientIP is logClientIp: whether records may hold the client's address.
	ClientIP bool
	// FrontendRequest, FrontendResponse, BackendRequest and BackendResponse are the header
	// names whose values records hold.
	FrontendRequest, FrontendResponse, BackendRequest, BackendResponse []string
	// Export is where the records go, nil when the logger is stored only (an Azure sink) or
	// its credentials did not reach this node.
	Export *diagnostic.OTLP
}

// Keeps reports whether the record of the session correlationID, which ended in error or
// not, is exported under d.
func (d *Diagnostic) Keeps(correlationID string, failed bool) bool {
	return d.AllErrors && failed || diagnostic.Sampled(correlationID, d.Percentage)
}

// diagnosticSet holds the compiled diagnostics by scope: "" for the service's, the
// lower-cased API name for an API's; each list is sorted by id.
type diagnosticSet map[string][]*Diagnostic

// Diagnostics returns the diagnostics that apply to the API api (its name without ";rev=n"):
// for each id, the API's own if it has one, else the service's. The slice is shared: do not
// modify it.
func (c *Config) Diagnostics(api string) []*Diagnostic {
	own := c.diagnostics[strings.ToLower(api)]
	service := c.diagnostics[""]
	if len(own) == 0 {
		return service
	}
	out := slices.Clone(own)
	for _, d := range service {
		if !slices.ContainsFunc(own, func(o *Diagnostic) bool { return strings.EqualFold(o.ID, d.ID) }) {
			out = append(out, d)
		}
	}
	return out
}

// buildDiagnostics compiles the diagnostics and loggers the Builder holds. A diagnostic whose
// logger is unknown is left out; an otlp logger whose credentials do not parse exports nothing
// and is logged.
func (b *Builder) buildDiagnostics() diagnosticSet {
	exports := map[string]*diagnostic.OTLP{}
	for k := range b.children[childKey(configwire.KindLogger, "")] {
		e := b.ents[k]
		if !e.Secret {
			exports[strings.ToLower(e.Name)] = nil
			continue
		}
		var creds map[string]string
		otlp, err := diagnostic.OTLP{}, json.Unmarshal([]byte(e.SecretValue), &creds)
		if err == nil {
			otlp, err = diagnostic.OTLPOf(creds)
		}
		if err != nil {
			if b.env.Log != nil {
				b.env.Log.Warn("an otlp logger's credentials do not parse: it exports nothing", slog.String("logger", e.Name), slog.String("err", err.Error()))
			}
			exports[strings.ToLower(e.Name)] = nil
			continue
		}
		exports[strings.ToLower(e.Name)] = &otlp
	}
	set := diagnosticSet{}
	prefix := configwire.KindDiagnostic + "|"
	for ck, keys := range b.children {
		if !strings.HasPrefix(ck, prefix) {
			continue
		}
		scope := strings.TrimPrefix(strings.TrimPrefix(ck, prefix), "apis/")
		for k := range keys {
			if d, ok := compileDiagnostic(b.ents[k], exports); ok {
				set[scope] = append(set[scope], d)
			}
		}
		slices.SortFunc(set[scope], func(x, y *Diagnostic) int { return strings.Compare(x.ID, y.ID) })
	}
	return set
}

// compileDiagnostic compiles one diagnostic entity against the loggers' exports (by lower-cased
// logger name); ok is false when its logger is unknown.
func compileDiagnostic(e configwire.Entity, exports map[string]*diagnostic.OTLP) (*Diagnostic, bool) {
	var p diagnostic.Properties
	if json.Unmarshal(e.Properties, &p) != nil {
		return nil, false
	}
	logger := p.LoggerID[strings.LastIndexByte(p.LoggerID, '/')+1:]
	export, ok := exports[strings.ToLower(logger)]
	if !ok {
		return nil, false
	}
	d := &Diagnostic{ID: e.Name, Logger: logger, Percentage: p.Percentage(), AllErrors: p.AlwaysLog == diagnostic.AlwaysLogAllErrors,
		ClientIP: p.ClientIP(), Export: export}
	d.FrontendRequest, d.FrontendResponse = p.Frontend.Headers()
	d.BackendRequest, d.BackendResponse = p.Backend.Headers()
	return d, true
}
