package reports

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gatehouse.dev/management/internal/odata"
)

// MaxFilterLength is the longest report $filter, in bytes, that ParseFilter accepts.
const MaxFilterLength = 1024

// MaxInterval is the longest byTime interval.
const MaxInterval = 366 * 24 * time.Hour

// Error is a report request the client got wrong; Field names the query parameter and Msg
// is safe to show to the client.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// Filter is a parsed report or connection log $filter: a time range, and optionally one API,
// one subscription, one gateway node and (the connection log only) one close code. The zero
// From, To mean unbounded.
type Filter struct {
	From, To                   time.Time
	FromExclusive, ToExclusive bool
	// API and Subscription are names (resource ids without their collection), "" for any.
	API, Subscription string
	// APISet and SubscriptionSet say a filter named them, for "" to mean "calls without a
	// subscription".
	APISet, SubscriptionSet bool
	// Node is a gateway node's id (the heartbeat's), "" for any.
	Node string
	// CloseCode is a WebSocket close code; CloseCodeSet says a filter named one.
	CloseCode    int
	CloseCodeSet bool
}

// ParseFilter parses a report $filter with the OData parser of list operations (odata.Parse):
// comparisons joined by "and", each "field op value", where field is timestamp (ge, gt, le,
// lt, with datetime'2026-11-24T00:00:00' or a quoted RFC 3339 time; a time without a zone is
// UTC), apiId or subscriptionId (eq, with a quoted resource id such as '/apis/echo' or a bare
// name) or nodeId (eq, a quoted node id). Keywords and field names are case-insensitive. The
// filter must bound timestamp from below, as APIM requires. Failures are *Error.
func ParseFilter(s string) (Filter, error) {
	if strings.TrimSpace(s) == "" {
		return Filter{}, &Error{"$filter", "$filter is required, e.g. timestamp ge datetime'2026-11-24T00:00:00'"}
	}
	f, err := parseTerms(s)
	if err != nil {
		return f, err
	}
	if f.CloseCodeSet {
		return f, &Error{"$filter", "closeCode filters the connection log, not reports"}
	}
	if f.From.IsZero() {
		return f, &Error{"$filter", "$filter must bound timestamp from below (timestamp ge datetime'...')"}
	}
	return f, nil
}

// ParseLogFilter parses a connection log $filter: the terms of ParseFilter, and closeCode
// (eq, a number). The filter may be empty, and timestamp (when the session closed) need not
// be bounded. Failures are *Error.
func ParseLogFilter(s string) (Filter, error) {
	if strings.TrimSpace(s) == "" {
		return Filter{}, nil
	}
	return parseTerms(s)
}

// parseTerms parses the comparisons of a $filter.
func parseTerms(s string) (Filter, error) {
	var f Filter
	if len(s) > MaxFilterLength || !utf8.ValidString(s) {
		return f, &Error{"$filter", "$filter must be valid UTF-8 of at most " + strconv.Itoa(MaxFilterLength) + " bytes"}
	}
	e, err := odata.Parse(s)
	if err != nil {
		return f, &Error{"$filter", err.Error()}
	}
	for _, term := range andTerms(e, nil) {
		c, ok := term.(*odata.Compare)
		if !ok {
			return f, &Error{"$filter", "a $filter is comparisons joined with and, such as timestamp ge datetime'2026-11-24T00:00:00'"}
		}
		if err := f.apply(c); err != nil {
			return f, err
		}
	}
	return f, nil
}

// andTerms appends the terms of e, and-ed at any depth of parentheses, to terms.
func andTerms(e odata.Expr, terms []odata.Expr) []odata.Expr {
	and, ok := e.(*odata.And)
	if !ok {
		return append(terms, e)
	}
	for _, t := range and.Terms {
		terms = andTerms(t, terms)
	}
	return terms
}

func (f *Filter) apply(c *odata.Compare) error {
	switch field := strings.ToLower(c.Field.Name); field {
	case "timestamp":
		t, err := parseTime(c.Value)
		if err != nil {
			return err
		}
		switch c.Op {
		case odata.OpGe, odata.OpGt:
			f.From, f.FromExclusive = t, c.Op == odata.OpGt
		case odata.OpLe, odata.OpLt:
			f.To, f.ToExclusive = t, c.Op == odata.OpLt
		default:
			return &Error{"$filter", "timestamp takes ge, gt, le or lt"}
		}
	case "apiid", "subscriptionid":
		if c.Op != odata.OpEq || c.Value.Kind != odata.KindString {
			return &Error{"$filter", field + " takes eq and a quoted id"}
		}
		if field == "apiid" {
			f.API, f.APISet = lastName(c.Value.Text, "/apis/"), true
		} else {
			f.Subscription, f.SubscriptionSet = lastName(c.Value.Text, "/subscriptions/"), true
		}
	case "nodeid":
		if c.Op != odata.OpEq || c.Value.Kind != odata.KindString {
			return &Error{"$filter", "nodeId takes eq and a quoted node id"}
		}
		f.Node = c.Value.Text
	case "closecode":
		code, err := strconv.Atoi(c.Value.Text)
		if c.Op != odata.OpEq || c.Value.Kind != odata.KindNumber || err != nil || code < 1000 || code > 4999 {
			return &Error{"$filter", "closeCode takes eq and a close code such as 1008"}
		}
		f.CloseCode, f.CloseCodeSet = code, true
	default:
		return &Error{"$filter", "the fields are timestamp, apiId, subscriptionId, nodeId and, in the connection log, closeCode"}
	}
	return nil
}

// lastName is the name after the last collection segment of an id ("/apis/echo" → "echo"),
// or id itself when it has none.
func lastName(id, collection string) string {
	if i := strings.LastIndex(strings.ToLower(id), strings.ToLower(collection)); i >= 0 {
		return id[i+len(collection):]
	}
	return id
}

// parseTime reads a timestamp value: datetime'…' or a quoted string, ISO 8601.
func parseTime(v odata.Value) (time.Time, error) {
	if v.Kind != odata.KindDateTime && v.Kind != odata.KindString {
		return time.Time{}, &Error{"$filter", "timestamp values are datetime'...'"}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v.Text, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &Error{"$filter", "timestamp values are ISO 8601 times such as datetime'2026-11-24T00:00:00'"}
}

var isoDuration = regexp.MustCompile(`^P(?:(\d{1,4})D)?(?:T(?:(\d{1,5})H)?(?:(\d{1,6})M)?(?:(\d{1,8})S)?)?$`)

// ParseInterval parses a byTime interval: an ISO 8601 duration of days, hours, minutes and
// seconds (PT15M, PT1H, P1D) that is a whole number of minutes, at least one and at most
// MaxInterval. Failures are *Error.
func ParseInterval(s string) (time.Duration, error) {
	bad := &Error{"interval", "interval must be an ISO 8601 duration of whole minutes such as PT15M, PT1H or P1D, at most P366D"}
	m := isoDuration.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return 0, bad
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] == "" {
			continue
		}
		n, _ := strconv.ParseInt(m[i+1], 10, 64)
		d += time.Duration(n) * unit
	}
	if d < time.Minute || d > MaxInterval || d%time.Minute != 0 {
		return 0, bad
	}
	return d, nil
}

// FormatInterval renders d as ISO 8601 (PT15M, PT1H30M, P1D).
func FormatInterval(d time.Duration) string {
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	var b strings.Builder
	b.WriteByte('P')
	if days > 0 {
		b.WriteString(strconv.FormatInt(int64(days), 10) + "D")
	}
	if rest > 0 || days == 0 {
		b.WriteByte('T')
		if h := rest / time.Hour; h > 0 {
			b.WriteString(strconv.FormatInt(int64(h), 10) + "H")
		}
		if m := rest % time.Hour / time.Minute; m > 0 || rest < time.Minute {
			b.WriteString(strconv.FormatInt(int64(m), 10) + "M")
		}
	}
	return b.String()
}
