// Package backend is the backend entity both services agree on: its ARM properties as stored and
// sent to nodes, the structural rules management checks at write time, and the circuit-breaker
// rule and pool order nodes compile from it (docs/backends.md).
package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Types of backend.
const (
	TypeSingle = "Single"
	TypePool   = "Pool"
)

// Properties are a backend's ARM properties (APIM 2024-05-01 BackendContractProperties). A
// Pool has no URL or protocol: both are null.
type Properties struct {
	URL         *string `json:"url"`
	Protocol    *string `json:"protocol"`
	Title       string  `json:"title,omitempty"`
	Description string  `json:"description,omitempty"`
	ResourceID  string  `json:"resourceId,omitempty"`
	// Credentials are applied to every request and handshake sent to the backend.
	Credentials *Credentials `json:"credentials,omitempty"`
	// TLS says how a wss or https backend's certificate is checked; both flags default to true.
	TLS            *TLS            `json:"tls,omitempty"`
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
	Type           string          `json:"type"`
	Pool           *Pool           `json:"pool,omitempty"`
	// Proxy and Properties (Service Fabric) are refused when set.
	Proxy      json.RawMessage `json:"proxy,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// Credentials are what the gateway adds to the backend call. Header and query values may
// reference {{named values}}, resolved on the node.
type Credentials struct {
	Header         map[string][]string `json:"header,omitempty"`
	Query          map[string][]string `json:"query,omitempty"`
	Authorization  *Authorization      `json:"authorization,omitempty"`
	CertificateIDs []string            `json:"certificateIds,omitempty"`
	Certificate    []string            `json:"certificate,omitempty"`
}

// Authorization is the backend's Authorization header: "Scheme Parameter".
type Authorization struct {
	Scheme    string `json:"scheme"`
	Parameter string `json:"parameter"`
}

// TLS holds the certificate checks of a wss or https backend; nil means true.
type TLS struct {
	ValidateCertificateChain *bool `json:"validateCertificateChain,omitempty"`
	ValidateCertificateName  *bool `json:"validateCertificateName,omitempty"`
}

// CircuitBreaker holds the breaker's rules; Gatehouse, like APIM, takes exactly one.
type CircuitBreaker struct {
	Rules []Rule `json:"rules"`
}

// Rule is a circuit-breaker rule: when FailureCondition holds, the backend is not called for
// TripDuration (or the backend's Retry-After with AcceptRetryAfter).
type Rule struct {
	Name             string            `json:"name,omitempty"`
	FailureCondition *FailureCondition `json:"failureCondition,omitempty"`
	TripDuration     string            `json:"tripDuration,omitempty"`
	AcceptRetryAfter bool              `json:"acceptRetryAfter,omitempty"`
}

// FailureCondition trips a breaker: Count failures, or Percentage of the calls failing,
// within Interval. A failure is a status in StatusCodeRanges, or, when ErrorReasons is not
// empty, a call that got no answer (dial, TLS or handshake failure, timeout).
type FailureCondition struct {
	Count            *int64        `json:"count,omitempty"`
	Percentage       *int64        `json:"percentage,omitempty"`
	Interval         string        `json:"interval,omitempty"`
	StatusCodeRanges []StatusRange `json:"statusCodeRanges,omitempty"`
	ErrorReasons     []string      `json:"errorReasons,omitempty"`
}

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Pool lists a pool's members.
type Pool struct {
	Services []Member `json:"services"`
	// SessionAffinity is refused when set.
	SessionAffinity json.RawMessage `json:"sessionAffinity,omitempty"`
}

// Member is one backend of a pool: ID is the full ARM id of a Single backend of the same
// service. A smaller Priority is tried first (APIM: lower value, higher priority); Weight
// shares the calls within a priority group (0 or absent: equal shares).
type Member struct {
	ID       string `json:"id"`
	Priority *int   `json:"priority,omitempty"`
	Weight   *int   `json:"weight,omitempty"`
}

// Error is a property that breaks a rule: Field is its JSON path ("properties.tls").
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

func fail(field, format string, args ...any) *Error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Decode decodes stored or submitted properties strictly: a property Gatehouse does not know
// is an Error naming it, never silently dropped.
func Decode(raw json.RawMessage) (Properties, error) {
	var p Properties
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return p, fail("properties."+te.Field, "expected a value of type %s", te.Type.Kind())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return p, fail("properties", "the property '%s' is not a backend property Gatehouse knows", name)
		}
		return p, fail("properties", "properties must be a JSON object")
	}
	return p, nil
}

// Validate checks the structure of p (APIM's limits, Terraform's circuit-breaker constraints)
// and fills the defaults (type Single, tls flags true). References (named values, pool
// members, certificates) are the caller's to check.
func Validate(p *Properties) error {
	if set(p.Proxy) {
		return fail("properties.proxy", "a backend proxy is not supported by Gatehouse")
	}
	if set(p.Properties) {
		return fail("properties.properties.serviceFabricCluster", "Service Fabric backends are not supported by Gatehouse")
	}
	if err := lengths(p); err != nil {
		return err
	}
	switch p.Type {
	case "", TypeSingle:
		p.Type = TypeSingle
		if err := validateSingle(p); err != nil {
			return err
		}
	case TypePool:
		if err := validatePool(p); err != nil {
			return err
		}
	default:
		return fail("properties.type", "type must be Single or Pool")
	}
	if err := validateCredentials(p.Credentials); err != nil {
		return err
	}
	if p.TLS == nil {
		p.TLS = &TLS{}
	}
	t := true
	if p.TLS.ValidateCertificateChain == nil {
		p.TLS.ValidateCertificateChain = &t
	}
	if p.TLS.ValidateCertificateName == nil {
		p.TLS.ValidateCertificateName = &t
	}
	if p.CircuitBreaker != nil {
		if _, err := p.CircuitBreaker.Compile(); err != nil {
			return err
		}
	}
	return nil
}

// set reports whether a raw JSON value is present and not null.
func set(raw json.RawMessage) bool {
	v := bytes.TrimSpace(raw)
	return len(v) > 0 && string(v) != "null"
}

// lengths checks APIM's string lengths.
func lengths(p *Properties) error {
	for _, f := range []struct {
		name, v string
		max     int
	}{{"title", p.Title, 300}, {"description", p.Description, 2000}, {"resourceId", p.ResourceID, 2000}} {
		if len(f.v) > f.max {
			return fail("properties."+f.name, "%s must be at most %d characters", f.name, f.max)
		}
	}
	return nil
}

// validateSingle checks a Single backend's url and protocol.
func validateSingle(p *Properties) error {
	if p.Pool != nil {
		return fail("properties.pool", "pool is only for a backend of type Pool")
	}
	if p.URL == nil || *p.URL == "" || len(*p.URL) > 2000 {
		return fail("properties.url", "url is required: an absolute http, https, ws or wss URL of at most 2000 characters")
	}
	if _, err := ParseURL(*p.URL); err != nil {
		return fail("properties.url", "%s", err)
	}
	if p.Protocol == nil || *p.Protocol == "" {
		return fail("properties.protocol", "protocol is required: http")
	}
	switch *p.Protocol {
	case "http":
	case "soap":
		return fail("properties.protocol", "the soap protocol is not supported by Gatehouse; use http")
	default:
		return fail("properties.protocol", "protocol must be http or soap")
	}
	return nil
}

// validatePool checks a Pool's members (their existence is the caller's to check).
func validatePool(p *Properties) error {
	if p.URL != nil && *p.URL != "" {
		return fail("properties.url", "a backend of type Pool has no url: its members have")
	}
	if p.Credentials != nil {
		return fail("properties.credentials", "a backend of type Pool has no credentials: its members have")
	}
	if p.Pool == nil || len(p.Pool.Services) == 0 {
		return fail("properties.pool.services", "a Pool needs at least one member in pool.services")
	}
	if set(p.Pool.SessionAffinity) {
		return fail("properties.pool.sessionAffinity", "session affinity is not supported by Gatehouse (a WebSocket session keeps its backend anyway)")
	}
	if len(p.Pool.Services) > 30 {
		return fail("properties.pool.services", "a Pool has at most 30 members")
	}
	seen := map[string]bool{}
	for i, m := range p.Pool.Services {
		field := fmt.Sprintf("properties.pool.services[%d]", i)
		name, ok := MemberName(m.ID)
		if !ok {
			return fail(field+".id", "id must be the full ARM id of a backend (…/providers/Microsoft.ApiManagement/service/{service}/backends/{name})")
		}
		if seen[strings.ToLower(name)] {
			return fail(field+".id", "the backend '%s' is a member twice", name)
		}
		seen[strings.ToLower(name)] = true
		if m.Priority != nil && (*m.Priority < 0 || *m.Priority > 100) {
			return fail(field+".priority", "priority must be 0 to 100")
		}
		if m.Weight != nil && (*m.Weight < 0 || *m.Weight > 100) {
			return fail(field+".weight", "weight must be 0 to 100")
		}
	}
	return nil
}

// memberID matches the tail of a backend's ARM id.
var memberID = regexp.MustCompile(`(?i)/providers/Microsoft\.ApiManagement/service/[^/]+/backends/([^/]+)$`)

// MemberName returns the backend name at the end of a pool member's ARM id.
func MemberName(id string) (string, bool) {
	m := memberID.FindStringSubmatch(id)
	if m == nil || !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") {
		return "", false
	}
	return m[1], true
}

// validateCredentials checks the credentials of a Single backend.
func validateCredentials(c *Credentials) error {
	if c == nil {
		return nil
	}
	if err := validateClientCertificates(c); err != nil {
		return err
	}
	for _, part := range []struct {
		name string
		m    map[string][]string
	}{{"header", c.Header}, {"query", c.Query}} {
		for k, vs := range part.m {
			if k == "" || strings.ContainsAny(k, " \t\r\n:") || len(k) > 256 {
				return fail("properties.credentials."+part.name, "'%s' is not a valid %s name", k, part.name)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					return fail("properties.credentials."+part.name, "the value of '%s' must not contain line breaks", k)
				}
			}
		}
	}
	if a := c.Authorization; a != nil {
		if a.Scheme == "" || len(a.Scheme) > 100 || strings.ContainsAny(a.Scheme, " \t\r\n") {
			return fail("properties.credentials.authorization.scheme", "scheme is required: 1 to 100 characters without spaces")
		}
		if a.Parameter == "" || len(a.Parameter) > 300 || strings.ContainsAny(a.Parameter, "\r\n\x00") {
			return fail("properties.credentials.authorization.parameter", "parameter is required: 1 to 300 characters without line breaks")
		}
	}
	return nil
}

// MaxClientCertificates bounds certificateIds and certificate (APIM's limit).
const MaxClientCertificates = 32

// thumbprint matches a certificate's SHA-1 thumbprint in hex, as APIM shows it.
var thumbprint = regexp.MustCompile(`^[0-9A-Fa-f]{40}$`)

// validateClientCertificates checks the shape of the client certificate references: at most
// MaxClientCertificates of each, ids not empty, thumbprints 40 hex digits. That they name
// certificates of the service is the caller's to check.
func validateClientCertificates(c *Credentials) error {
	if len(c.CertificateIDs) > MaxClientCertificates {
		return fail("properties.credentials.certificateIds", "at most %d certificateIds", MaxClientCertificates)
	}
	if len(c.Certificate) > MaxClientCertificates {
		return fail("properties.credentials.certificate", "at most %d certificate thumbprints", MaxClientCertificates)
	}
	for i, id := range c.CertificateIDs {
		if strings.TrimSpace(id) == "" || len(id) > 2000 {
			return fail(fmt.Sprintf("properties.credentials.certificateIds[%d]", i), "a certificate id is the name or the ARM id of a certificate of the service")
		}
	}
	for i, t := range c.Certificate {
		if !thumbprint.MatchString(t) {
			return fail(fmt.Sprintf("properties.credentials.certificate[%d]", i), "a certificate thumbprint is 40 hexadecimal digits")
		}
	}
	return nil
}

// ClientCertificates returns the client certificates the backend presents: its certificateIds
// when there are any, else its certificate thumbprints (APIM ignores the thumbprints when ids
// are given). byThumbprint says which of the two the list holds.
func (c *Credentials) ClientCertificates() (refs []string, byThumbprint bool) {
	switch {
	case c == nil:
		return nil, false
	case len(c.CertificateIDs) > 0:
		return c.CertificateIDs, false
	default:
		return c.Certificate, len(c.Certificate) > 0
	}
}

// CertificateName returns the certificate name a certificateIds entry names: the entry itself,
// or the last segment of an id ending "/certificates/{name}". The caller checks that a full
// id is of its service.
func CertificateName(id string) string {
	if i := strings.LastIndex(strings.ToLower(id), "/certificates/"); i >= 0 {
		return id[i+len("/certificates/"):]
	}
	return id
}

// Values returns every value of c that may reference {{named values}}.
func (c *Credentials) Values() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, m := range []map[string][]string{c.Header, c.Query} {
		for _, vs := range m {
			out = append(out, vs...)
		}
	}
	if c.Authorization != nil {
		out = append(out, c.Authorization.Scheme, c.Authorization.Parameter)
	}
	return out
}

// Breaker is a compiled circuit-breaker rule.
type Breaker struct {
	// Count trips the breaker at this many failures within Interval (0: Percentage does).
	Count int64
	// Percentage trips it when at least this share of the calls within Interval failed.
	Percentage       int64
	Interval         time.Duration
	TripDuration     time.Duration
	AcceptRetryAfter bool
	// Statuses are the failing status ranges; Errors says whether unanswered calls fail.
	Statuses []StatusRange
	Errors   bool
}

// FailedStatus reports whether a backend answer with status counts as a failure.
func (b *Breaker) FailedStatus(status int) bool {
	for _, r := range b.Statuses {
		if status >= r.Min && status <= r.Max {
			return true
		}
	}
	return false
}

// Compile checks the rule as Terraform does (one rule; exactly one of count 1–10000 and
// percentage 1–100; interval and tripDuration; at least one of statusCodeRanges and
// errorReasons) and compiles it.
func (cb *CircuitBreaker) Compile() (*Breaker, error) {
	const field = "properties.circuitBreaker.rules"
	if len(cb.Rules) != 1 {
		return nil, fail(field, "exactly one circuit-breaker rule is supported")
	}
	r := cb.Rules[0]
	f := r.FailureCondition
	if f == nil {
		return nil, fail(field+"[0].failureCondition", "failureCondition is required")
	}
	b := &Breaker{AcceptRetryAfter: r.AcceptRetryAfter, Errors: len(f.ErrorReasons) > 0}
	switch {
	case (f.Count == nil) == (f.Percentage == nil):
		return nil, fail(field+"[0].failureCondition", "exactly one of count and percentage is required")
	case f.Count != nil && (*f.Count < 1 || *f.Count > 10000):
		return nil, fail(field+"[0].failureCondition.count", "count must be 1 to 10000")
	case f.Percentage != nil && (*f.Percentage < 1 || *f.Percentage > 100):
		return nil, fail(field+"[0].failureCondition.percentage", "percentage must be 1 to 100")
	case f.Count != nil:
		b.Count = *f.Count
	default:
		b.Percentage = *f.Percentage
	}
	var err error
	if b.Interval, err = ParseDuration(f.Interval); err != nil || b.Interval <= 0 {
		return nil, fail(field+"[0].failureCondition.interval", "interval is required: an ISO 8601 duration such as PT1M")
	}
	if b.TripDuration, err = ParseDuration(r.TripDuration); err != nil || b.TripDuration <= 0 {
		return nil, fail(field+"[0].tripDuration", "tripDuration is required: an ISO 8601 duration such as PT30S")
	}
	if len(f.StatusCodeRanges) == 0 && len(f.ErrorReasons) == 0 {
		return nil, fail(field+"[0].failureCondition", "at least one of statusCodeRanges and errorReasons is required")
	}
	if len(f.StatusCodeRanges) > 10 || len(f.ErrorReasons) > 10 {
		return nil, fail(field+"[0].failureCondition", "at most 10 statusCodeRanges and 10 errorReasons")
	}
	for i, s := range f.StatusCodeRanges {
		if s.Min < 200 || s.Max > 599 || s.Min > s.Max {
			return nil, fail(fmt.Sprintf("%s[0].failureCondition.statusCodeRanges[%d]", field, i), "min and max must be statuses 200 to 599, min not above max")
		}
	}
	for i, e := range f.ErrorReasons {
		if e == "" || len(e) > 200 {
			return nil, fail(fmt.Sprintf("%s[0].failureCondition.errorReasons[%d]", field, i), "an error reason is 1 to 200 characters")
		}
	}
	b.Statuses = f.StatusCodeRanges
	return b, nil
}

// isoDuration matches the time-based ISO 8601 durations: days, hours, minutes, seconds.
var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// ParseDuration parses an ISO 8601 duration of days, hours, minutes and seconds ("PT30S",
// "P1DT2H"); years, months and weeks have no fixed length and are refused, as is "" or "P".
func ParseDuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("'%s' is not an ISO 8601 duration of days, hours, minutes and seconds", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute} {
		if m[i+1] != "" {
			n, err := strconv.ParseInt(m[i+1], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("'%s': %w", s, err)
			}
			d += time.Duration(n) * unit
		}
	}
	if m[4] != "" {
		sec, err := strconv.ParseFloat(m[4], 64)
		if err != nil || sec > 1e7 {
			return 0, fmt.Errorf("'%s' has too many seconds", s)
		}
		d += time.Duration(sec * float64(time.Second))
	}
	return d, nil
}

// ParseURL parses an absolute http, https, ws or wss URL: a backend's url, or a base-url.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("'%s' is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return nil, fmt.Errorf("the URL '%s' must use the http, https, ws or wss scheme", raw)
	}
	return u, nil
}
