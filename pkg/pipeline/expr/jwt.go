package expr

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Jwt is a JSON Web Token as policy expressions see it, APIM's Jwt type. string.AsJwt()
// returns one without checking it; validate-jwt stores the validated token in its
// output-token-variable-name as a *Jwt. A Jwt is never modified after it is made, so it may be
// shared.
type Jwt struct {
	// Raw is the compact serialization.
	Raw string
	// Header and Claims are the decoded JOSE header and claims set.
	Header map[string]any
	Claims map[string]any
}

// ClaimValues returns the values of the named claim as strings, APIM's Claims[name]: a string
// claim is one value, an array claim one value per element, other JSON values their JSON
// text. It returns nil when the claim is absent.
func (j *Jwt) ClaimValues(name string) []string {
	v, ok := j.Claims[name]
	if !ok {
		return nil
	}
	if arr, ok := v.([]any); ok {
		out := make([]string, len(arr))
		for i, e := range arr {
			out[i] = claimText(e)
		}
		return out
	}
	return []string{claimText(v)}
}

// ClaimValue returns the named claim's values joined with commas, APIM's
// Claims.GetValueOrDefault(name, def), and whether the claim is present.
func (j *Jwt) ClaimValue(name string) (string, bool) {
	v, ok := j.Claims[name]
	if !ok {
		return "", false
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	return strings.Join(j.ClaimValues(name), ","), true
}

// claimText renders one JSON claim value as text.
func claimText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// StringClaim returns a claim that must be a string, e.g. "iss".
func (j *Jwt) StringClaim(name string) (string, bool) {
	s, ok := j.Claims[name].(string)
	return s, ok
}

// headerString returns a string header parameter such as "alg".
func (j *Jwt) headerString(name string) string {
	s, _ := j.Header[name].(string)
	return s
}

// TimeClaim returns a NumericDate claim (exp, nbf, iat) and whether it is present and numeric.
func (j *Jwt) TimeClaim(name string) (time.Time, bool) {
	var f float64
	switch t := j.Claims[name].(type) {
	case float64:
		f = t
	case json.Number:
		var err error
		if f, err = t.Float64(); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), true
}

// Audiences returns the aud claim, a string or an array of strings.
func (j *Jwt) Audiences() []string {
	switch t := j.Claims["aud"].(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// ParseJwt decodes a compact JWS without verifying it. A leading "Bearer " is removed, as
// APIM's AsJwt does for Authorization header values. It returns nil when s is not a JWT.
func ParseJwt(s string) *Jwt {
	s = strings.TrimSpace(s)
	if len(s) > 7 && strings.EqualFold(s[:7], "bearer ") {
		s = strings.TrimSpace(s[7:])
	}
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return nil
	}
	c, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return nil
	}
	j := &Jwt{Raw: s}
	if decodeSegment(h, &j.Header) != nil || decodeSegment(c, &j.Claims) != nil || j.Header == nil || j.Claims == nil {
		return nil
	}
	return j
}

func decodeSegment(seg string, into *map[string]any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}
