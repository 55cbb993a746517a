package policy

import (
	"encoding/base64"
	"net/url"
)

// ValidateJWT is <validate-jwt>: the request must carry a valid JWT. Exactly one of
// HeaderName, QueryParameterName and TokenValue is set. Attribute fields hold the value as
// written (possibly an expression or a {{named value}}); empty means absent, and the gateway
// applies APIM's defaults: FailedValidationHTTPCode 401, RequireExpirationTime and
// RequireSignedTokens true, ClockSkew 0.
type ValidateJWT struct {
	Meta
	HeaderName                   string
	QueryParameterName           string
	TokenValue                   string
	FailedValidationHTTPCode     string
	FailedValidationErrorMessage string
	RequireExpirationTime        string
	RequireScheme                string
	RequireSignedTokens          string
	ClockSkew                    string
	OutputTokenVariableName      string

	OpenIDConfigs     []OpenIDConfig
	IssuerSigningKeys []JWTKey
	DecryptionKeys    []JWTKey
	Audiences         []string
	Issuers           []string
	RequiredClaims    []Claim
}

// OpenIDConfig is <openid-config url="..."/>: signing keys come from the provider's metadata.
type OpenIDConfig struct {
	Pos Pos
	URL string
}

// JWTKey is a <key> of issuer-signing-keys or decryption-keys: exactly one of Value (a Base64
// symmetric key), CertificateID, or N and E (an RSA public key's Base64url modulus and
// exponent). ID is the optional key id (kid).
type JWTKey struct {
	Pos           Pos
	ID            string
	CertificateID string
	N, E          string
	Value         string
}

// Claim is a <claim> of required-claims. Match is "all" (the default when empty) or "any";
// Separator, when set, splits a multi-valued claim.
type Claim struct {
	Pos       Pos
	Name      string
	Match     string
	Separator string
	Values    []string
}

// ElementName returns "validate-jwt".
func (*ValidateJWT) ElementName() string { return "validate-jwt" }

// Encode returns the <validate-jwt> element.
func (p *ValidateJWT) Encode() *Element {
	e := newElement("validate-jwt", p.Meta).
		attr("header-name", p.HeaderName).
		attr("query-parameter-name", p.QueryParameterName).
		attr("token-value", p.TokenValue).
		attr("failed-validation-httpcode", p.FailedValidationHTTPCode).
		attr("failed-validation-error-message", p.FailedValidationErrorMessage).
		attr("require-expiration-time", p.RequireExpirationTime).
		attr("require-scheme", p.RequireScheme).
		attr("require-signed-tokens", p.RequireSignedTokens).
		attr("clock-skew", p.ClockSkew).
		attr("output-token-variable-name", p.OutputTokenVariableName).
		attr("id", p.ID)
	for _, c := range p.OpenIDConfigs {
		e.child((&Element{Name: "openid-config", Pos: c.Pos}).attrAlways("url", c.URL))
	}
	keys := func(name string, ks []JWTKey) {
		if len(ks) == 0 {
			return
		}
		c := &Element{Name: name}
		for _, k := range ks {
			c.child((&Element{Name: "key", Pos: k.Pos}).
				attr("id", k.ID).attr("certificate-id", k.CertificateID).attr("n", k.N).attr("e", k.E).
				text(k.Value))
		}
		e.child(c)
	}
	keys("issuer-signing-keys", p.IssuerSigningKeys)
	keys("decryption-keys", p.DecryptionKeys)
	list := func(name, item string, vs []string) {
		if len(vs) == 0 {
			return
		}
		c := &Element{Name: name}
		for _, v := range vs {
			c.textChild(item, v)
		}
		e.child(c)
	}
	list("audiences", "audience", p.Audiences)
	list("issuers", "issuer", p.Issuers)
	if len(p.RequiredClaims) > 0 {
		c := &Element{Name: "required-claims"}
		for _, cl := range p.RequiredClaims {
			ce := (&Element{Name: "claim", Pos: cl.Pos}).
				attrAlways("name", cl.Name).attr("match", cl.Match).attr("separator", cl.Separator)
			for _, v := range cl.Values {
				ce.textChild("value", v)
			}
			c.child(ce)
		}
		e.child(c)
	}
	return e
}

func decodeValidateJWT(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &ValidateJWT{
		Meta:                         a.meta(),
		HeaderName:                   a.str("header-name", false),
		QueryParameterName:           a.str("query-parameter-name", false),
		TokenValue:                   a.str("token-value", false),
		FailedValidationHTTPCode:     a.integer("failed-validation-httpcode", false, 100, 599, true),
		FailedValidationErrorMessage: a.str("failed-validation-error-message", false),
		RequireExpirationTime:        a.boolean("require-expiration-time", false),
		RequireScheme:                a.str("require-scheme", false),
		RequireSignedTokens:          a.boolean("require-signed-tokens", false),
		ClockSkew:                    a.integer("clock-skew", false, 0, maxInt, true),
		OutputTokenVariableName:      a.str("output-token-variable-name", false),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	sources := 0
	for _, v := range []string{p.HeaderName, p.QueryParameterName, p.TokenValue} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, e.Errorf("Exactly one of the attributes 'header-name', 'query-parameter-name' and 'token-value' must be specified.")
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	for _, c := range e.Elements() {
		var err error
		switch c.Name {
		case "openid-config":
			var oc OpenIDConfig
			oc, err = decodeOpenIDConfig(c)
			p.OpenIDConfigs = append(p.OpenIDConfigs, oc)
		case "issuer-signing-keys":
			p.IssuerSigningKeys, err = decodeKeys(c, p.IssuerSigningKeys)
		case "decryption-keys":
			p.DecryptionKeys, err = decodeKeys(c, p.DecryptionKeys)
		case "audiences":
			p.Audiences, err = decodeList(c, "audience", p.Audiences)
		case "issuers":
			p.Issuers, err = decodeList(c, "issuer", p.Issuers)
		case "required-claims":
			p.RequiredClaims, err = decodeClaims(c, p.RequiredClaims)
		default:
			err = unexpected(e, c)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

func decodeOpenIDConfig(e *Element) (OpenIDConfig, error) {
	a := readAttrs(e)
	oc := OpenIDConfig{Pos: e.Pos, URL: a.str("url", true)}
	if err := a.done(); err != nil {
		return oc, err
	}
	if len(e.Nodes) > 0 {
		return oc, e.Errorf("The element must be empty.")
	}
	if !isDynamic(oc.URL) {
		if u, err := url.Parse(trimSpace(oc.URL)); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return oc, e.Errorf("The attribute 'url' must be an absolute http or https URL.")
		}
	}
	return oc, nil
}

// decodeKeys appends the <key> children of a key container to ks.
func decodeKeys(c *Element, ks []JWTKey) ([]JWTKey, error) {
	if err := readAttrs(c).done(); err != nil {
		return nil, err
	}
	if err := c.noText(); err != nil {
		return nil, err
	}
	for _, ke := range c.Elements() {
		if ke.Name != "key" {
			return nil, unexpected(c, ke)
		}
		a := readAttrs(ke)
		k := JWTKey{
			Pos:           ke.Pos,
			ID:            a.str("id", false),
			CertificateID: a.str("certificate-id", false),
			N:             a.str("n", false),
			E:             a.str("e", false),
		}
		if err := a.done(); err != nil {
			return nil, err
		}
		var err error
		if k.Value, err = ke.textOnly(); err != nil {
			return nil, err
		}
		forms := 0
		if k.Value != "" {
			forms++
		}
		if k.CertificateID != "" {
			forms++
		}
		if k.N != "" || k.E != "" {
			forms++
			if k.N == "" || k.E == "" {
				return nil, ke.Errorf("The attributes 'n' and 'e' must be specified together.")
			}
		}
		if forms != 1 {
			return nil, ke.Errorf("A key must be exactly one of: Base64 text, 'certificate-id', or 'n' and 'e'.")
		}
		if k.Value != "" && !isDynamic(k.Value) && !isBase64(k.Value) {
			return nil, ke.Errorf("The key is not a valid Base64 string.")
		}
		ks = append(ks, k)
	}
	return ks, nil
}

func isBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// decodeList appends the text of the <item> children of c to vs.
func decodeList(c *Element, item string, vs []string) ([]string, error) {
	if err := readAttrs(c).done(); err != nil {
		return nil, err
	}
	if err := c.noText(); err != nil {
		return nil, err
	}
	for _, ie := range c.Elements() {
		if ie.Name != item {
			return nil, unexpected(c, ie)
		}
		v, err := elementLeaf(ie)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func decodeClaims(c *Element, cls []Claim) ([]Claim, error) {
	if err := readAttrs(c).done(); err != nil {
		return nil, err
	}
	if err := c.noText(); err != nil {
		return nil, err
	}
	for _, ce := range c.Elements() {
		if ce.Name != "claim" {
			return nil, unexpected(c, ce)
		}
		a := readAttrs(ce)
		cl := Claim{
			Pos:       ce.Pos,
			Name:      a.str("name", true),
			Match:     a.enum("match", false, "all", "any"),
			Separator: a.str("separator", false),
		}
		if err := a.done(); err != nil {
			return nil, err
		}
		var err error
		if cl.Values, err = decodeValues(ce); err != nil {
			return nil, err
		}
		cls = append(cls, cl)
	}
	return cls, nil
}

// decodeValues returns the text of the <value> children of e, which has no other content.
func decodeValues(e *Element) ([]string, error) {
	if err := e.noText(); err != nil {
		return nil, err
	}
	var vs []string
	for _, ve := range e.Elements() {
		if ve.Name != "value" {
			return nil, unexpected(e, ve)
		}
		v, err := elementLeaf(ve)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}
