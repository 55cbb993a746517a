package reports

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// Filter is a parsed report $filter: a time range of minutes, and optionally one API or one
// subscription. The zero From, To mean unbounded.
type Filter struct {
	From, To                   time.Time
	FromExclusive, ToExclusive bool
	// API and Subscription are names (resource ids without their collection), "" for any.
	API, Subscription string
	// APISet and SubscriptionSet say a filter named them, for "" to mean "calls without a
	// subscription".
	APISet, SubscriptionSet bool
}

// ParseFilter parses a report $filter: terms joined by "and", each "field op value", where
// field is timestamp (ge, gt, le, lt, with datetime'2026-11-24T00:00:00' or a quoted
// RFC 3339 time; a time without a zone is UTC), apiId or subscriptionId (eq, with a quoted
// resource id such as '/apis/echo' or a bare name). Keywords are case-insensitive. The
// filter must bound timestamp from below, as APIM requires. Failures are *Error.
func ParseFilter(s string) (Filter, error) {
	var f Filter
	if strings.TrimSpace(s) == "" {
		return f, &Error{"$filter", "$filter is required, e.g. timestamp ge datetime'2026-11-24T00:00:00'"}
	}
	if len(s) > MaxFilterLength || !utf8.ValidString(s) {
		return f, &Error{"$filter", "$filter must be valid UTF-8 of at most " + strconv.Itoa(MaxFilterLength) + " bytes"}
	}
	toks, err := lexFilter(s)
	if err != nil {
		return f, err
	}
	for i := 0; ; {
		if len(toks)-i < 3 {
			return f, &Error{"$filter", "expected a term such as timestamp ge datetime'2026-11-24T00:00:00'"}
		}
		field, op, val := toks[i], strings.ToLower(toks[i+1].text), toks[i+2]
		if field.quoted || toks[i+1].quoted || !val.quoted {
			return f, &Error{"$filter", "a term is a field, an operator and a quoted value"}
		}
		if err := f.apply(strings.ToLower(field.text), op, val); err != nil {
			return f, err
		}
		i += 3
		if i == len(toks) {
			break
		}
		if toks[i].quoted || !strings.EqualFold(toks[i].text, "and") {
			return f, &Error{"$filter", "terms are joined with and"}
		}
		i++
	}
	if f.From.IsZero() {
		return f, &Error{"$filter", "$filter must bound timestamp from below (timestamp ge datetime'...')"}
	}
	return f, nil
}

func (f *Filter) apply(field, op string, val token) error {
	switch field {
	case "timestamp":
		t, err := parseTime(val)
		if err != nil {
			return err
		}
		switch op {
		case "ge", "gt":
			f.From, f.FromExclusive = t, op == "gt"
		case "le", "lt":
			f.To, f.ToExclusive = t, op == "lt"
		default:
			return &Error{"$filter", "timestamp takes ge, gt, le or lt"}
		}
	case "apiid", "subscriptionid":
		if op != "eq" || val.prefix != "" {
			return &Error{"$filter", field + " takes eq and a quoted id"}
		}
		if field == "apiid" {
			f.API, f.APISet = lastName(val.text, "/apis/"), true
		} else {
			f.Subscription, f.SubscriptionSet = lastName(val.text, "/subscriptions/"), true
		}
	default:
		return &Error{"$filter", "the fields are timestamp, apiId and subscriptionId"}
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

func parseTime(val token) (time.Time, error) {
	if val.prefix != "" && !strings.EqualFold(val.prefix, "datetime") && !strings.EqualFold(val.prefix, "datetimeoffset") {
		return time.Time{}, &Error{"$filter", "timestamp values are datetime'...'"}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, val.text, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &Error{"$filter", "timestamp values are ISO 8601 times such as datetime'2026-11-24T00:00:00'"}
}

// token is a word of a filter, or a quoted value with the word before its quote (datetime).
type token struct {
	text, prefix string
	quoted       bool
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, &Error{"$filter", "unterminated quoted value"}
			}
			toks = append(toks, token{text: b.String(), quoted: true})
			i = j + 1
		case isWord(c):
			j := i
			for j < len(s) && isWord(s[j]) {
				j++
			}
			if j < len(s) && s[j] == '\'' { // datetime'...'
				rest, err := lexFilter(s[j:])
				if err != nil || len(rest) == 0 {
					return nil, &Error{"$filter", "unterminated quoted value"}
				}
				rest[0].prefix = s[i:j]
				return append(toks, rest...), nil
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		default:
			return nil, &Error{"$filter", "unexpected character " + strconv.QuoteRune(rune(c))}
		}
	}
	return toks, nil
}

func isWord(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
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
