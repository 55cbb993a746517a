package pipeline

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"gatehouse.dev/pkg/pipeline/expr"
	"gatehouse.dev/pkg/policy"
)

// signedMethods are the JWS algorithms validate-jwt accepts. Which key verifies a token is
// decided by the algorithm's family, never by the key alone: an HMAC token is only checked
// against symmetric keys and an RSA token only against RSA keys, so a token "signed" with an
// RSA public key's bytes as an HMAC secret finds no key (algorithm confusion).
var signedMethods = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// errNoKey is the keyfunc's error when no configured key can verify the token.
var errNoKey = errors.New("no signing key matches the token")

// validateJWTStep is <validate-jwt>.
type validateJWTStep struct {
	in *info

	header        string // canonical header name, or ""
	authorization bool   // header is Authorization: require-scheme applies, "Bearer " is removed
	scheme        string
	query         string
	token         expr.Text // token-value expression
	fromToken     bool

	status        expr.Number
	message       expr.Text
	requireExp    bool
	requireSigned bool
	skew          time.Duration
	outputVar     string

	symmetric []jwk
	rsa       []jwk
	openid    []string
	keys      *KeySource

	audiences []expr.Text
	issuers   []expr.Text
	claims    []requiredClaim

	parser   *jwt.Parser
	verified verifiedTokens // only used without openid-config keys (jwtcache.go)
}

// requiredClaim is a <claim> of required-claims.
type requiredClaim struct {
	name      string
	any       bool
	separator string
	values    []expr.Text
}

func (b *builder) validateJWT(in *info, p *policy.ValidateJWT) (step, error) {
	s := &validateJWTStep{in: in, keys: b.env.Keys}
	var err error
	switch {
	case p.HeaderName != "":
		name := strings.TrimSpace(p.HeaderName)
		if policy.IsExpression(name) {
			return nil, errors.New("header-name: policy expressions are not supported")
		}
		s.header = http.CanonicalHeaderKey(name)
		s.authorization = s.header == "Authorization"
		s.scheme = strings.TrimSpace(p.RequireScheme)
	case p.QueryParameterName != "":
		s.query = strings.TrimSpace(p.QueryParameterName)
	default:
		if s.token, err = expr.CompileText(p.TokenValue); err != nil {
			return nil, fmt.Errorf("token-value: %w", err)
		}
		s.fromToken = true
	}
	if s.status, err = expr.CompileNumber("failed-validation-httpcode", p.FailedValidationHTTPCode, http.StatusUnauthorized); err != nil {
		return nil, err
	}
	if s.message, err = expr.CompileText(p.FailedValidationErrorMessage); err != nil {
		return nil, fmt.Errorf("failed-validation-error-message: %w", err)
	}
	requireExp, err := expr.CompileFlag("require-expiration-time", p.RequireExpirationTime, true)
	if err != nil {
		return nil, err
	}
	var lit bool
	if s.requireExp, lit = requireExp.Literal(); !lit {
		return nil, errors.New("require-expiration-time: policy expressions are not supported")
	}
	signed, err := expr.CompileFlag("require-signed-tokens", p.RequireSignedTokens, true)
	if err != nil {
		return nil, err
	}
	if s.requireSigned, lit = signed.Literal(); !lit {
		return nil, errors.New("require-signed-tokens: policy expressions are not supported")
	}
	skew, err := expr.CompileNumber("clock-skew", p.ClockSkew, 0)
	if err != nil {
		return nil, err
	}
	skewSec, lit := skew.Literal()
	if !lit || skewSec < 0 || skewSec > 24*3600 {
		return nil, errors.New("clock-skew: must be a number of seconds between 0 and 86400")
	}
	s.skew = time.Duration(skewSec) * time.Second
	s.outputVar = strings.TrimSpace(p.OutputTokenVariableName)

	if len(p.DecryptionKeys) > 0 {
		return nil, errors.New("decryption-keys: encrypted tokens (JWE) are not supported")
	}
	for _, k := range p.IssuerSigningKeys {
		switch {
		case k.CertificateID != "":
			return nil, errors.New("issuer-signing-keys: certificate-id keys are not supported; give the key as n and e, or use openid-config")
		case k.N != "":
			key, err := inlineRSAKey(k.ID, k.N, k.E)
			if err != nil {
				return nil, fmt.Errorf("issuer-signing-keys: key on line %d: %w", k.Pos.Line, err)
			}
			s.rsa = append(s.rsa, key)
		default:
			if policy.IsExpression(k.Value) {
				return nil, errors.New("issuer-signing-keys: policy expressions are not supported in keys")
			}
			key, err := decodeB64URL(k.Value)
			if err != nil || len(key) == 0 {
				return nil, fmt.Errorf("issuer-signing-keys: key on line %d is not valid Base64", k.Pos.Line)
			}
			s.symmetric = append(s.symmetric, jwk{kid: k.ID, key: key})
		}
	}
	for _, oc := range p.OpenIDConfigs {
		u := strings.TrimSpace(oc.URL)
		if policy.IsExpression(u) {
			return nil, errors.New("openid-config: policy expressions are not supported in url")
		}
		if err := b.checkFetchURL(u); err != nil {
			return nil, fmt.Errorf("openid-config: %w", err)
		}
		s.openid = append(s.openid, u)
	}
	if len(s.openid) > 0 && s.keys == nil {
		return nil, errors.New("openid-config needs a key source, and Env.Keys is nil")
	}
	if len(s.symmetric)+len(s.rsa)+len(s.openid) == 0 && s.requireSigned {
		return nil, errors.New("no signing keys: add issuer-signing-keys or openid-config")
	}
	if s.audiences, err = expr.CompileTexts(p.Audiences); err != nil {
		return nil, fmt.Errorf("audience: %w", err)
	}
	if s.issuers, err = expr.CompileTexts(p.Issuers); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	for _, c := range p.RequiredClaims {
		rc := requiredClaim{name: c.Name, any: strings.EqualFold(c.Match, "any"), separator: c.Separator}
		if rc.values, err = expr.CompileTexts(c.Values); err != nil {
			return nil, fmt.Errorf("claim %s: %w", c.Name, err)
		}
		s.claims = append(s.claims, rc)
	}
	methods := signedMethods
	if !s.requireSigned {
		methods = append(methods[:len(methods):len(methods)], "none")
	}
	// Numbers stay json.Number: claims are read as text or as NumericDate (expr.Jwt), and
	// decoding every number as a float64 was a sizeable part of a handshake's cost.
	s.parser = jwt.NewParser(jwt.WithValidMethods(methods), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	return s, nil
}

// checkFetchURL refuses a URL a policy fetches unless it is an absolute http or https URL that
// Env.FetchCheck, if set, accepts.
func (b *builder) checkFetchURL(raw string) error {
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		return fmt.Errorf("'%s' is not an absolute http or https URL", raw)
	}
	if b.env.FetchCheck == nil {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("'%s' is not an absolute http or https URL", raw)
	}
	return b.env.FetchCheck(u)
}

// jwtFailure is a validation failure: context.LastError's Reason and APIM-style message.
type jwtFailure struct {
	reason, message string
}

func (s *validateJWTStep) run(c *runCtx) *Response {
	raw, err := s.extract(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if raw == "" {
		return s.reject(c, jwtFailure{"TokenNotPresent", "JWT not present."})
	}
	tok, f := s.validate(c, raw)
	if f != nil {
		return s.reject(c, *f)
	}
	if exp, ok := tok.TimeClaim("exp"); ok && (c.req.TokenExpiry.IsZero() || exp.Before(c.req.TokenExpiry)) {
		c.req.TokenExpiry = exp
	}
	if s.outputVar != "" {
		c.setVar(s.outputVar, tok)
	}
	return nil
}

// extract returns the token from where the policy says it is, "" when absent.
func (s *validateJWTStep) extract(c *runCtx) (string, error) {
	switch {
	case s.fromToken:
		return s.token.Eval(c)
	case s.query != "":
		return strings.TrimSpace(c.req.Query.Get(s.query)), nil
	}
	v := ""
	if vals := c.req.Header[s.header]; len(vals) > 0 {
		v = strings.TrimSpace(vals[0])
	}
	if !s.authorization {
		return v, nil
	}
	scheme, rest, found := strings.Cut(v, " ")
	switch {
	case s.scheme != "":
		if !found || !strings.EqualFold(scheme, s.scheme) {
			return "", nil
		}
		return strings.TrimSpace(rest), nil
	case found && strings.EqualFold(scheme, "Bearer"):
		return strings.TrimSpace(rest), nil
	}
	return v, nil
}

// validate checks the token's signature, lifetime, audience, issuer and required claims.
func (s *validateJWTStep) validate(c *runCtx, raw string) (*expr.Jwt, *jwtFailure) {
	tok, f := s.verify(c, raw)
	if f != nil {
		return nil, f
	}
	now := c.now
	exp, hasExp := tok.TimeClaim("exp")
	if _, present := tok.Claims["exp"]; present && !hasExp {
		return nil, &jwtFailure{"JwtInvalid", "JWT expiration time is not a number."}
	}
	switch {
	case !hasExp && s.requireExp:
		return nil, &jwtFailure{"TokenExpired", "Lifetime validation failed. The token is missing an expiration time. Access denied."}
	case hasExp && now.After(exp.Add(s.skew)):
		return nil, &jwtFailure{"TokenExpired", "Lifetime validation failed. The token is expired. Access denied."}
	}
	if nbf, ok := tok.TimeClaim("nbf"); ok && now.Add(s.skew).Before(nbf) {
		return nil, &jwtFailure{"TokenNotYetValid", "Lifetime validation failed. The token is not yet valid. Access denied."}
	}
	if len(s.audiences) > 0 && !s.anyMatch(c, s.audiences, tok.Audiences()) {
		return nil, &jwtFailure{"TokenAudienceNotAllowed", "Audience validation failed. Access denied."}
	}
	if len(s.issuers) > 0 {
		iss, _ := tok.StringClaim("iss")
		if !s.anyMatch(c, s.issuers, []string{iss}) {
			return nil, &jwtFailure{"TokenIssuerNotAllowed", "Issuer validation failed. Access denied."}
		}
	}
	if f := s.checkClaims(c, tok); f != nil {
		return nil, f
	}
	return tok, nil
}

// verify decodes raw and checks its signature, unless the step verified the same text before
// and its keys cannot have changed since (no openid-config).
func (s *validateJWTStep) verify(c *runCtx, raw string) (*expr.Jwt, *jwtFailure) {
	fixedKeys := len(s.openid) == 0
	if fixedKeys {
		if tok := s.verified.get(raw, c.now); tok != nil {
			return tok, nil
		}
	}
	token, err := s.parser.ParseWithClaims(raw, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		return s.keyFor(c, t)
	})
	if err != nil {
		return nil, classify(token, err)
	}
	tok := &expr.Jwt{Raw: raw, Header: token.Header, Claims: token.Claims.(jwt.MapClaims)}
	if fixedKeys {
		s.verified.put(tok, c.now)
	}
	return tok, nil
}

// anyMatch reports whether one of the configured values equals one of got.
func (s *validateJWTStep) anyMatch(c *runCtx, want []expr.Text, got []string) bool {
	for _, w := range want {
		v, err := w.Eval(c)
		if err != nil {
			continue
		}
		for _, g := range got {
			if g == v {
				return true
			}
		}
	}
	return false
}

// checkClaims applies required-claims: every listed claim must be present, and hold all (or,
// with match="any", one) of the listed values; a separator splits multi-valued claims.
func (s *validateJWTStep) checkClaims(c *runCtx, tok *expr.Jwt) *jwtFailure {
	var missing []string
	for _, rc := range s.claims {
		if _, ok := tok.Claims[rc.name]; !ok {
			missing = append(missing, rc.name)
		}
	}
	if len(missing) > 0 {
		return &jwtFailure{"TokenClaimNotFound", "JWT token is missing the following claims: " + strings.Join(missing, ", ") + ". Access denied."}
	}
	for _, rc := range s.claims {
		if len(rc.values) == 0 {
			continue
		}
		got := tok.ClaimValues(rc.name)
		if rc.separator != "" {
			var parts []string
			for _, g := range got {
				for _, p := range strings.Split(g, rc.separator) {
					parts = append(parts, strings.TrimSpace(p))
				}
			}
			got = parts
		}
		matched := 0
		for _, w := range rc.values {
			v, err := w.Eval(c)
			if err == nil && contains(got, v) {
				matched++
			}
		}
		if rc.any && matched == 0 || !rc.any && matched < len(rc.values) {
			val, _ := tok.ClaimValue(rc.name)
			return &jwtFailure{"TokenClaimValueNotAllowed", "Claim " + rc.name + " value of " + val + " is not allowed. Access denied."}
		}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// keyFor returns the keys that may verify t: those of its algorithm's family whose kid (when
// both have one) matches. A kid that no cached openid-config key has triggers a refetch.
func (s *validateJWTStep) keyFor(c *runCtx, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == "none" {
		if s.requireSigned {
			return nil, errNoKey
		}
		return jwt.UnsafeAllowNoneSignatureType, nil
	}
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	if strings.HasPrefix(alg, "HS") {
		set.Keys = appendKeys(set.Keys, s.symmetric, kid, alg)
	} else {
		set.Keys = appendKeys(set.Keys, s.rsa, kid, alg)
	}
	inline := len(set.Keys)
	for _, u := range s.openid {
		set.Keys = appendKeys(set.Keys, s.keys.keys(c.ctx, u, false), kid, alg)
	}
	if len(set.Keys) == inline && kid != "" {
		for _, u := range s.openid {
			set.Keys = appendKeys(set.Keys, s.keys.keys(c.ctx, u, true), kid, alg)
		}
	}
	if len(set.Keys) == 0 {
		return nil, errNoKey
	}
	return set, nil
}

// appendKeys appends to dst the keys that may verify a token of algorithm alg and key ID kid:
// those of alg's family whose kid (when both have one) and alg (when the key has one) match.
// The selection is ours, not jwkset.Storage's KeyRead: a token or a key without a kid matches
// any, and the algorithm family decides (see signedMethods).
func appendKeys(dst []jwt.VerificationKey, keys []jwk, kid, alg string) []jwt.VerificationKey {
	for _, k := range keys {
		if (kid == "" || k.kid == "" || k.kid == kid) && (k.alg == "" || k.alg == alg) && fits(alg, k.key) {
			dst = append(dst, k.key)
		}
	}
	return dst
}

// fits reports whether key belongs to the family of alg.
func fits(alg string, key any) bool {
	switch key.(type) {
	case []byte:
		return strings.HasPrefix(alg, "HS")
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// classify maps a parse error to APIM's reasons.
func classify(t *jwt.Token, err error) *jwtFailure {
	switch {
	case errors.Is(err, errNoKey):
		if t != nil && t.Method != nil && t.Method.Alg() == "none" {
			return &jwtFailure{"TokenSignatureInvalid", "The token is not signed. Access denied."}
		}
		return &jwtFailure{"TokenSignatureKeyNotFound", "Signature validation failed. Unable to match key. Access denied."}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &jwtFailure{"JwtInvalid", "JWT is malformed."}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && t.Method.Alg() == "none" {
			return &jwtFailure{"TokenSignatureInvalid", "The token is not signed. Access denied."}
		}
		return &jwtFailure{"TokenSignatureInvalid", "Signature validation failed. Access denied."}
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return &jwtFailure{"JwtInvalid", "JWT signing algorithm is not supported."}
	}
	return &jwtFailure{"JwtInvalid", "JWT is invalid."}
}

func (s *validateJWTStep) reject(c *runCtx, f jwtFailure) *Response {
	status, err := s.status.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if status < 100 || status > 599 {
		status = http.StatusUnauthorized
	}
	msg, err := s.message.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if msg == "" {
		msg = f.message
	}
	return &Response{Status: int(status), Message: msg, Source: "validate-jwt", Reason: f.reason}
}
