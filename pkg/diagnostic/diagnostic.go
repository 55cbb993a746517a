// Package diagnostic is the logger and diagnostic entities both services agree on (issue 15,
// docs/observability.md): their ARM properties as stored and sent to nodes, the structural
// rules management checks at write time, the credentials of the logger type that really
// exports (OTLP/HTTP), and the sampling decision nodes apply to connection records.
package diagnostic

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"
)

// Logger types. The three Azure sinks are APIM's and are stored only: Gatehouse sends nothing
// to Application Insights, Event Hubs or Azure Monitor. TypeOTLP is Gatehouse's own: its
// records are exported as OTLP/HTTP logs (JSON) by the nodes.
const (
	TypeApplicationInsights = "applicationInsights"
	TypeAzureEventHub       = "azureEventHub"
	TypeAzureMonitor        = "azureMonitor"
	TypeOTLP                = "otlp"
)

// loggerTypes lists the logger types in their canonical spelling.
var loggerTypes = []string{TypeApplicationInsights, TypeAzureEventHub, TypeAzureMonitor, TypeOTLP}

// Logger holds a logger's ARM properties (APIM 2024-05-01 LoggerContractProperties).
// Credentials hold, as stored and returned, placeholders: the values live sealed.
type Logger struct {
	LoggerType  string            `json:"loggerType"`
	Description string            `json:"description,omitempty"`
	Credentials map[string]string `json:"credentials,omitempty"`
	// IsBuffered is APIM's; "Default is assumed to be true". Nodes always batch.
	IsBuffered *bool  `json:"isBuffered,omitempty"`
	ResourceID string `json:"resourceId,omitempty"`
}

// Credential keys of an otlp logger: the collector's base URL, records going to
// <endpoint>/v1/logs, and headers sent with every export, as OTEL_EXPORTER_OTLP_HEADERS
// writes them ("Authorization=Bearer x,X-Tenant=y").
const (
	CredentialEndpoint = "endpoint"
	CredentialHeaders  = "headers"
)

// Error is a property that breaks a rule; Field names it as the ARM body does
// ("properties.sampling.percentage").
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

func fail(field, format string, args ...any) *Error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidateLogger checks a logger's properties with its credentials in plaintext and
// canonicalizes the type's case.
func ValidateLogger(l *Logger) error {
	t, ok := canonical(loggerTypes, l.LoggerType)
	if !ok {
		return fail("properties.loggerType", "loggerType is required: one of %s", strings.Join(loggerTypes, ", "))
	}
	l.LoggerType = t
	if len(l.Description) > 256 {
		return fail("properties.description", "description must be at most 256 characters")
	}
	if len(l.ResourceID) > 2000 {
		return fail("properties.resourceId", "resourceId must be at most 2000 characters")
	}
	for k, v := range l.Credentials {
		if k == "" || len(k) > 256 || len(v) > 4096 {
			return fail("properties.credentials", "credential names must be 1 to 256 characters and values at most 4096")
		}
	}
	switch l.LoggerType {
	case TypeOTLP:
		_, err := OTLPOf(l.Credentials)
		return err
	case TypeAzureMonitor:
		if len(l.Credentials) > 0 {
			return fail("properties.credentials", "an azureMonitor logger takes no credentials")
		}
	}
	return nil
}

// OTLP is where an otlp logger's records go.
type OTLP struct {
	// URL is <endpoint>/v1/logs.
	URL    string
	Header http.Header
}

// OTLPOf reads and checks the credentials of an otlp logger.
func OTLPOf(creds map[string]string) (OTLP, error) {
	for k := range creds {
		if k != CredentialEndpoint && k != CredentialHeaders {
			return OTLP{}, fail("properties.credentials."+k, "an otlp logger takes the credentials 'endpoint' and 'headers' only")
		}
	}
	raw := creds[CredentialEndpoint]
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return OTLP{}, fail("properties.credentials.endpoint", "an otlp logger needs credentials.endpoint: the http or https base URL of an OTLP/HTTP collector, without user, query or fragment")
	}
	h := http.Header{}
	if v := creds[CredentialHeaders]; v != "" {
		for _, pair := range strings.Split(v, ",") {
			name, value, ok := strings.Cut(pair, "=")
			name = strings.TrimSpace(name)
			if !ok || !validToken(name) || strings.ContainsAny(value, "\r\n\x00") {
				return OTLP{}, fail("properties.credentials.headers", "headers must be name=value pairs separated by commas")
			}
			h.Add(name, strings.TrimSpace(value))
		}
	}
	return OTLP{URL: strings.TrimSuffix(u.String(), "/") + "/v1/logs", Header: h}, nil
}

// validToken reports whether s is an HTTP token (RFC 9110 §5.6.2), as a header name must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Values of a diagnostic's enumerations (APIM 2024-05-01).
const (
	AlwaysLogAllErrors = "allErrors"
	SamplingFixed      = "fixed"
)

var (
	verbosities          = []string{"verbose", "information", "error"}
	correlationProtocols = []string{"None", "Legacy", "W3C"}
	operationNameFormats = []string{"Name", "Url"}
)

// MaxBodyBytes is the most body bytes a diagnostic may ask for (APIM's limit).
const MaxBodyBytes = 8192

// Properties are a diagnostic's ARM properties (APIM 2024-05-01 DiagnosticContractProperties).
type Properties struct {
	// LoggerID is the logger's full ARM id as stored; management accepts a relative one.
	LoggerID                string    `json:"loggerId"`
	AlwaysLog               string    `json:"alwaysLog,omitempty"`
	Sampling                *Sampling `json:"sampling,omitempty"`
	Frontend                *Pipeline `json:"frontend,omitempty"`
	Backend                 *Pipeline `json:"backend,omitempty"`
	LogClientIP             *bool     `json:"logClientIp,omitempty"`
	HTTPCorrelationProtocol string    `json:"httpCorrelationProtocol,omitempty"`
	Verbosity               string    `json:"verbosity,omitempty"`
	OperationNameFormat     string    `json:"operationNameFormat,omitempty"`
	Metrics                 *bool     `json:"metrics,omitempty"`
}

// Sampling is the share of connection records kept.
type Sampling struct {
	SamplingType string   `json:"samplingType"`
	Percentage   *float64 `json:"percentage"`
}

// Pipeline is what is logged of one side (frontend: the client; backend: the backend) of the
// gateway.
type Pipeline struct {
	Request  *Message `json:"request,omitempty"`
	Response *Message `json:"response,omitempty"`
}

// Message is what is logged of a request or response: the headers named, and body bytes
// (stored: a WebSocket session's records hold no message bodies).
type Message struct {
	Headers []string `json:"headers,omitempty"`
	Body    *Body    `json:"body,omitempty"`
}

// Body says how many body bytes to log.
type Body struct {
	Bytes *int `json:"bytes,omitempty"`
}

// Validate checks a diagnostic's properties, except that its logger exists, and canonicalizes
// the case of its enumerations.
func Validate(p *Properties) error {
	if p.LoggerID == "" {
		return fail("properties.loggerId", "loggerId is required: the id of a logger of this service")
	}
	for _, e := range []struct {
		field   string
		value   *string
		allowed []string
	}{
		{"alwaysLog", &p.AlwaysLog, []string{AlwaysLogAllErrors}},
		{"verbosity", &p.Verbosity, verbosities},
		{"httpCorrelationProtocol", &p.HTTPCorrelationProtocol, correlationProtocols},
		{"operationNameFormat", &p.OperationNameFormat, operationNameFormats},
	} {
		if *e.value == "" {
			continue
		}
		v, ok := canonical(e.allowed, *e.value)
		if !ok {
			return fail("properties."+e.field, "%s must be one of %s", e.field, strings.Join(e.allowed, ", "))
		}
		*e.value = v
	}
	if s := p.Sampling; s != nil {
		t, ok := canonical([]string{SamplingFixed}, s.SamplingType)
		if !ok {
			return fail("properties.sampling.samplingType", "samplingType must be 'fixed'")
		}
		s.SamplingType = t
		if s.Percentage == nil || *s.Percentage < 0 || *s.Percentage > 100 {
			return fail("properties.sampling.percentage", "percentage is required: a number from 0 to 100")
		}
	}
	for side, pl := range map[string]*Pipeline{"frontend": p.Frontend, "backend": p.Backend} {
		if pl == nil {
			continue
		}
		for dir, m := range map[string]*Message{"request": pl.Request, "response": pl.Response} {
			if err := m.validate("properties." + side + "." + dir); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Message) validate(at string) error {
	if m == nil {
		return nil
	}
	if len(m.Headers) > 32 {
		return fail(at+".headers", "at most 32 headers")
	}
	for _, h := range m.Headers {
		if !validToken(h) {
			return fail(at+".headers", "'%s' is not a header name", h)
		}
	}
	if m.Body != nil && m.Body.Bytes != nil && (*m.Body.Bytes < 0 || *m.Body.Bytes > MaxBodyBytes) {
		return fail(at+".body.bytes", "bytes must be from 0 to %d", MaxBodyBytes)
	}
	return nil
}

// canonical returns the member of allowed that v spells in any case.
func canonical(allowed []string, v string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}

// Percentage is the share of records kept, 100 when no sampling is set.
func (p *Properties) Percentage() float64 {
	if p.Sampling == nil || p.Sampling.Percentage == nil {
		return 100
	}
	return *p.Sampling.Percentage
}

// ClientIP reports whether records may hold the client's address: logClientIp, false unless set
// (APIM's default).
func (p *Properties) ClientIP() bool { return p.LogClientIP != nil && *p.LogClientIP }

// Sampled reports whether the record of the session correlationID is kept at percentage
// (0–100). The decision is a hash of the id, so every node, and a replay, decides alike.
func Sampled(correlationID string, percentage float64) bool {
	switch {
	case percentage >= 100:
		return true
	case percentage <= 0:
		return false
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(correlationID))
	return float64(h.Sum64()%1_000_000) < percentage*10_000
}

// Headers returns the header names logged of the request and of the response; nil for none.
// A nil Pipeline logs none.
func (p *Pipeline) Headers() (request, response []string) {
	if p == nil {
		return nil, nil
	}
	if p.Request != nil {
		request = p.Request.Headers
	}
	if p.Response != nil {
		response = p.Response.Headers
	}
	return request, response
}
