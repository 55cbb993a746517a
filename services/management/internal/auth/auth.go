// Package auth decides who calls management: the static admin token, a bearer JWT from the
// configured issuer whose claims name the ARM subscriptions (tenants) the caller may touch
// ("subscriptions": ids or ["*"]) and its role ("roles": Contributor or Reader), or a consumer:
// a user of one service signed in with a user token (issue 6), who may use the portal API only.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Role is what a principal may do within its tenants.
type Role string

// Roles. A Consumer may touch no tenant through the ARM API.
const (
	Reader      Role = "Reader"
	Contributor Role = "Contributor"
	Consumer    Role = "Consumer"
)

// Kind says how a principal signed in.
type Kind string

// Kinds of principal.
const (
	KindAdmin    Kind = "admin"
	KindTenant   Kind = "tenant"
	KindConsumer Kind = "consumer"
)

// Principal is an authenticated caller.
type Principal struct {
	Kind Kind
	// Subject identifies the caller in logs ("admin", the JWT's sub, or a consumer's user id).
	Subject string
	// Subscriptions are the ARM subscription ids the caller may touch; "*" means all. A
	// consumer has none.
	Subscriptions []string
	Role          Role
	// ServiceID and User are, for a consumer only, the internal id of its service and its user
	// id (the user's name) there.
	ServiceID string
	User      string
}

// NewConsumer returns the principal of user of the service with internal id serviceID, whose
// user token the caller has verified.
func NewConsumer(serviceID, user string) Principal {
	return Principal{Kind: KindConsumer, Subject: user, Role: Consumer, ServiceID: serviceID, User: user}
}

// CanAccess reports whether p may touch resources of the ARM subscription id sub.
func (p Principal) CanAccess(sub string) bool {
	return slices.ContainsFunc(p.Subscriptions, func(s string) bool { return s == "*" || strings.EqualFold(s, sub) })
}

// CanWrite reports whether p may change resources or read secrets.
func (p Principal) CanWrite() bool { return p.Role == Contributor }

// ErrUnauthenticated means no valid credential was presented. Its cause is for the log only.
var ErrUnauthenticated = errors.New("unauthenticated")

// Config configures a Verifier. Zero fields disable what they configure.
type Config struct {
	AdminToken string
	Issuer     string
	Audience   string
	// JWKSURL is fetched and refreshed by keyfunc; Key is an HMAC secret or a PEM public key.
	JWKSURL string
	Key     string
}

// Verifier authenticates bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg     Config
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
}

// New returns a Verifier; with a JWKS URL it starts a background refresh bound to ctx.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{cfg: cfg}
	if cfg.Issuer == "" {
		return v, nil
	}
	opts := []jwt.ParserOption{jwt.WithIssuer(cfg.Issuer), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	switch {
	case cfg.JWKSURL != "":
		kf, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS %s: %w", cfg.JWKSURL, err)
		}
		v.keyfunc = kf.Keyfunc
		opts = append(opts, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}))
	case strings.Contains(cfg.Key, "-----BEGIN"):
		key, methods, err := parsePublicKey(cfg.Key)
		if err != nil {
			return nil, err
		}
		v.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
		opts = append(opts, jwt.WithValidMethods(methods))
	case cfg.Key != "":
		secret := []byte(cfg.Key)
		v.keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
		opts = append(opts, jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}))
	default:
		return nil, errors.New("auth: a JWT issuer needs MANAGEMENT_JWKS_URL or MANAGEMENT_JWT_KEY")
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func parsePublicKey(p string) (any, []string, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, nil, errors.New("auth: MANAGEMENT_JWT_KEY is not PEM")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: MANAGEMENT_JWT_KEY: %w", err)
	}
	switch key.(type) {
	case *rsa.PublicKey:
		return key, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		return key, []string{"ES256", "ES384", "ES512"}, nil
	case ed25519.PublicKey:
		return key, []string{"EdDSA"}, nil
	}
	return nil, nil, fmt.Errorf("auth: unsupported public key type %T", key)
}

type claims struct {
	jwt.RegisteredClaims
	Subscriptions []string `json:"subscriptions"`
	Roles         []string `json:"roles"`
}

// BearerToken returns the token of an Authorization header value "Bearer <token>".
func BearerToken(header string) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	return token, nil
}

// Authenticate checks an Authorization header value: the admin token or a JWT. Consumer tokens
// are the catalog's to verify.
func (v *Verifier) Authenticate(header string) (Principal, error) {
	token, err := BearerToken(header)
	if err != nil {
		return Principal{}, err
	}
	if v.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(v.cfg.AdminToken)) == 1 {
		return Principal{Kind: KindAdmin, Subject: "admin", Subscriptions: []string{"*"}, Role: Contributor}, nil
	}
	if v.parser == nil {
		return Principal{}, fmt.Errorf("%w: not the admin token and JWT auth is off", ErrUnauthenticated)
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyfunc); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	p := Principal{Kind: KindTenant, Subject: c.Subject, Subscriptions: c.Subscriptions, Role: Reader}
	for _, r := range c.Roles {
		if strings.EqualFold(r, string(Contributor)) {
			p.Role = Contributor
		}
	}
	if len(p.Subscriptions) == 0 {
		return Principal{}, fmt.Errorf("%w: token names no subscriptions", ErrUnauthenticated)
	}
	return p, nil
}
