package catalog

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// GatewayProperties are the stored ARM properties of a self-hosted gateway resource.
type GatewayProperties struct {
	LocationData *GatewayLocation `json:"locationData"`
	Description  string           `json:"description,omitempty"`
}

// GatewayLocation says where a gateway runs.
type GatewayLocation struct {
	Name            string `json:"name"`
	City            string `json:"city,omitempty"`
	District        string `json:"district,omitempty"`
	CountryOrRegion string `json:"countryOrRegion,omitempty"`
}

// GatewayKeys are a gateway's signing keys, returned by listKeys.
type GatewayKeys struct {
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
}

// MaxGatewayTokenLifetime is APIM's limit on generateToken's expiry.
const MaxGatewayTokenLifetime = 30 * 24 * time.Hour

const (
	secretGatewayPrimary   = "primary"
	secretGatewaySecondary = "secondary"
	tokenExpiryFormat      = "200601021504"
)

var gatewayBehaviour = behaviour{
	writable: func(ctx context.Context, w *write, parent, name string) error {
		if strings.EqualFold(name, "managed") {
			return invalid("gatewayId", "the gateway id must not be 'managed'")
		}
		return nil
	},
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p GatewayProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if p.LocationData == nil || strings.TrimSpace(p.LocationData.Name) == "" || len(p.LocationData.Name) > 256 {
			return invalid("properties.locationData.name", "locationData.name is required and must be at most 256 characters")
		}
		if len(p.Description) > 1000 {
			return invalid("properties.description", "description must be at most 1000 characters")
		}
		r.Properties = mustJSON(p)
		if old != nil {
			r.Secrets = old.Secrets
		} else {
			r.Secrets = map[string]string{secretGatewayPrimary: newGatewayKey(), secretGatewaySecondary: newGatewayKey()}
		}
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		for _, k := range []*Kind{KindGatewayAPI, KindGatewayHostname, KindGatewayCA} {
			if err := w.deleteAll(ctx, Query{Kind: k, Parent: r.Path()}, opts); err != nil {
				return err
			}
		}
		return nil
	},
}

func newGatewayKey() string {
	b := make([]byte, 64)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.StdEncoding.EncodeToString(b)
}

// GatewayKeys returns a gateway's keys.
func (c *Catalog) GatewayKeys(ctx context.Context, ref ServiceRef, name string) (GatewayKeys, Resource, error) {
	r, err := c.Get(ctx, ref, KindGateway, "", name)
	if err != nil {
		return GatewayKeys{}, r, err
	}
	return GatewayKeys{Primary: r.Secrets[secretGatewayPrimary], Secondary: r.Secrets[secretGatewaySecondary]}, r, nil
}

func keyName(keyType string) (string, error) {
	switch strings.ToLower(keyType) {
	case "primary":
		return secretGatewayPrimary, nil
	case "secondary":
		return secretGatewaySecondary, nil
	}
	return "", invalid("keyType", "keyType must be primary or secondary")
}

// RegenerateGatewayKey replaces one of a gateway's keys. Tokens signed with the old key stop working.
func (c *Catalog) RegenerateGatewayKey(ctx context.Context, ref ServiceRef, name, keyType string) error {
	secret, err := keyName(keyType)
	if err != nil {
		return err
	}
	return c.modify(ctx, ref, KindGateway, "", name, func(ctx context.Context, w *write, r *Resource) error {
		r.Secrets[secret] = newGatewayKey()
		return nil
	})
}

// GenerateGatewayToken returns a token a gateway node presents to management, valid until
// expiry (at most 30 days ahead). Its shape is APIM's, "{id}&{yyyyMMddHHmm}&{signature}", with
// the gateway's internal id so management can find it without knowing the service; the
// signature is Base64(HMAC-SHA512(key, "{id}\n{expiry}")).
func (c *Catalog) GenerateGatewayToken(ctx context.Context, ref ServiceRef, name, keyType string, expiry time.Time) (string, error) {
	secret, err := c.checkTokenRequest(keyType, expiry)
	if err != nil {
		return "", err
	}
	r, err := c.Get(ctx, ref, KindGateway, "", name)
	if err != nil {
		return "", err
	}
	return newSignedToken(r.ID, expiry, r.Secrets[secret]), nil
}

// checkTokenRequest enforces APIM's rules on a token request: a primary or secondary key, and
// an expiry in the future and at most MaxGatewayTokenLifetime ahead. It returns the name of
// the key to sign with.
func (c *Catalog) checkTokenRequest(keyType string, expiry time.Time) (string, error) {
	key, err := keyName(keyType)
	if err != nil {
		return "", err
	}
	now := c.now()
	switch {
	case expiry.IsZero():
		return "", invalid("expiry", "expiry is required")
	case !expiry.After(now):
		return "", invalid("expiry", "expiry must be in the future")
	case expiry.After(now.Add(MaxGatewayTokenLifetime)):
		return "", invalid("expiry", "Maximum token expiry time is set to 30 days")
	}
	return key, nil
}

// newSignedToken returns the token "{id}&{yyyyMMddHHmm}&{signature}" signed with key.
func newSignedToken(id string, expiry time.Time, key string) string {
	exp := expiry.UTC().Format(tokenExpiryFormat)
	return id + "&" + exp + "&" + signToken(key, id, exp)
}

func signToken(key, id, exp string) string {
	m := hmac.New(sha512.New, []byte(key))
	fmt.Fprintf(m, "%s\n%s", id, exp)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// signedToken is a parsed token of newSignedToken's shape, not yet checked against a key.
type signedToken struct {
	id, exp, sig string
	expiry       time.Time
}

// parseSignedToken splits token and checks that it has not expired at now.
func parseSignedToken(token string, now time.Time) (signedToken, bool) {
	parts := strings.Split(token, "&")
	if len(parts) != 3 {
		return signedToken{}, false
	}
	exp, err := time.Parse(tokenExpiryFormat, parts[1])
	if err != nil || !exp.After(now) {
		return signedToken{}, false
	}
	return signedToken{id: parts[0], exp: parts[1], sig: parts[2], expiry: exp}, true
}

// signedBy reports, in constant time per key, whether one of keys signed t.
func (t signedToken) signedBy(keys ...string) bool { return t.signer(keys...) >= 0 }

// signer returns the index in keys of the key that signed t, or -1; every key is tried, each in
// constant time.
func (t signedToken) signer(keys ...string) int {
	found := -1
	for i, k := range keys {
		if hmac.Equal([]byte(signToken(k, t.id, t.exp)), []byte(t.sig)) {
			found = i
		}
	}
	return found
}

// tokenHolder parses a token of newSignedToken's shape that has not expired and reads the
// resource of kind it names, not yet checking the signature. A malformed or expired token, or
// one naming no such resource, is the error invalid.
func (c *Catalog) tokenHolder(ctx context.Context, token string, kind *Kind, invalid error) (signedToken, Resource, error) {
	t, ok := parseSignedToken(token, c.now())
	if !ok {
		return t, Resource{}, invalid
	}
	r, err := c.store.GetByID(ctx, t.id)
	if errors.Is(err, ErrNotFound) || err == nil && r.Kind != kind {
		return t, r, invalid
	}
	return t, r, err
}

// GatewayNode is a verified gateway token's holder.
type GatewayNode struct {
	Service Service
	Gateway Resource
	Expiry  time.Time
	// KeyBinding is the GatewayKeyBinding of the gateway key that signed the token, which the
	// node key handed to the holder is bound to. It is a secret.
	KeyBinding []byte
}

// GatewayKeyBinding is what the node keys of the holders of tokens signed with the gateway key
// key are bound to (configwire.DeriveNodeKey): a digest of the key, which changes when the key
// is regenerated and from which the key cannot be recovered. It is a secret all the same.
func GatewayKeyBinding(key string) []byte {
	sum := sha256.Sum256([]byte("gatehouse/gateway-key/v1\x00" + key))
	return sum[:]
}

// GatewayBindings are the node-key bindings of one gateway resource: the GatewayKeyBinding of
// each of its keys (primary and secondary).
type GatewayBindings struct {
	ServiceID, Gateway string
	Bindings           [][]byte
}

// GatewayKeyBindings returns the bindings of every gateway resource of the service with internal
// id serviceID, or of every service when serviceID is "" (gatewaykeys keeps them in memory).
func (c *Catalog) GatewayKeyBindings(ctx context.Context, serviceID string) ([]GatewayBindings, error) {
	gateways, err := c.store.Gateways(ctx, serviceID)
	if err != nil {
		return nil, err
	}
	out := make([]GatewayBindings, 0, len(gateways))
	for _, g := range gateways {
		b := GatewayBindings{ServiceID: g.ServiceID, Gateway: g.Name}
		for _, name := range []string{secretGatewayPrimary, secretGatewaySecondary} {
			if key := g.Secrets[name]; key != "" {
				b.Bindings = append(b.Bindings, GatewayKeyBinding(key))
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// VerifyGatewayToken checks a token from GenerateGatewayToken ("GatewayKey " prefix allowed)
// against the gateway's current keys and its expiry. Every failure is ErrInvalidToken, so a
// caller learns nothing about which part was wrong.
func (c *Catalog) VerifyGatewayToken(ctx context.Context, token string) (GatewayNode, error) {
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(token), "GatewayKey "))
	t, r, err := c.tokenHolder(ctx, token, KindGateway, ErrInvalidToken)
	if err != nil {
		return GatewayNode{}, err
	}
	keys := []string{r.Secrets[secretGatewayPrimary], r.Secrets[secretGatewaySecondary]}
	i := t.signer(keys...)
	if i < 0 {
		return GatewayNode{}, ErrInvalidToken
	}
	svc, err := c.store.GetServiceByID(ctx, r.ServiceID)
	if err != nil {
		return GatewayNode{}, err
	}
	return GatewayNode{Service: svc, Gateway: r, Expiry: t.expiry, KeyBinding: GatewayKeyBinding(keys[i])}, nil
}

// NamedValueProperties are the ARM properties of a named value. For a secret one, Value is
// empty in storage and on GET; the value lives sealed and leaves only through listValue.
type NamedValueProperties struct {
	DisplayName       string          `json:"displayName"`
	Value             *string         `json:"value,omitempty"`
	Secret            bool            `json:"secret"`
	Tags              []string        `json:"tags"`
	KeyVault          json.RawMessage `json:"keyVault,omitempty"`
	ProvisioningState string          `json:"provisioningState"`
}

const secretValue = "value"

var namedValueBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p NamedValueProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if len(p.DisplayName) == 0 || len(p.DisplayName) > 256 || !displayNamePattern.MatchString(p.DisplayName) {
			return invalid("properties.displayName", "displayName is required: up to 256 letters, digits, periods, dashes and underscores")
		}
		if len(p.KeyVault) > 0 && string(p.KeyVault) != "null" {
			return invalid("properties.keyVault", "Key Vault references are not supported by Gatehouse; set the value")
		}
		p.KeyVault = nil
		if p.Value == nil && old != nil && old.Secrets[secretValue] != "" {
			v := old.Secrets[secretValue]
			p.Value = &v
		}
		if p.Value == nil || strings.TrimSpace(*p.Value) == "" || len(*p.Value) > 4096 {
			return invalid("properties.value", "value is required: not empty or only whitespace, at most 4096 characters")
		}
		if len(p.Tags) > 32 {
			return invalid("properties.tags", "at most 32 tags")
		}
		if p.Tags == nil {
			p.Tags = []string{}
		}
		same, _, err := w.tx.List(ctx, Query{Kind: KindNamedValue, PropEquals: map[string]string{"displayName": p.DisplayName}, All: true})
		if err != nil {
			return err
		}
		for _, o := range same {
			if !strings.EqualFold(o.Name, r.Name) {
				return invalid("properties.displayName", "a named value with display name '%s' already exists", p.DisplayName)
			}
		}
		// {{x}} resolves by name or display name: one must not be another's other.
		all, _, err := w.tx.List(ctx, Query{Kind: KindNamedValue, All: true, NoSecrets: true})
		if err != nil {
			return err
		}
		for _, o := range all {
			_, display, _, _ := namedValueOf(o)
			switch {
			case strings.EqualFold(o.Name, r.Name):
			case strings.EqualFold(o.Name, p.DisplayName):
				return invalid("properties.displayName", "the display name '%s' is the name of another named value: {{%s}} would be ambiguous", p.DisplayName, p.DisplayName)
			case strings.EqualFold(display, r.Name):
				return invalid("name", "the name '%s' is the display name of another named value: {{%s}} would be ambiguous", r.Name, r.Name)
			}
		}
		if err := w.checkNamedValueChange(ctx, r.Name, p.DisplayName, *p.Value, p.Secret, old); err != nil {
			return err
		}
		if old != nil {
			_, oldDisplay, _, _ := namedValueOf(*old)
			if err := w.checkNamedValueKept(ctx, r.Name, oldDisplay, p.DisplayName); err != nil {
				return err
			}
		}
		p.ProvisioningState = "Succeeded"
		r.Secrets = nil
		if p.Secret {
			r.Secrets = map[string]string{secretValue: *p.Value}
			p.Value = nil
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		var p NamedValueProperties
		_ = json.Unmarshal(r.Properties, &p)
		policies, _, err := w.tx.List(ctx, Query{Kind: KindPolicy, AnyParent: true, All: true})
		if err != nil {
			return err
		}
		for _, pol := range policies {
			doc, _, err := ParsePolicy(policyValue(pol))
			if err != nil {
				continue
			}
			for _, ref := range doc.NamedValues() {
				if strings.EqualFold(ref, r.Name) || strings.EqualFold(ref, p.DisplayName) {
					return &ConflictError{Message: fmt.Sprintf("Named value '%s' is referenced by the policy of '%s'; remove the reference first.", p.DisplayName, pol.Parent)}
				}
			}
		}
		if err := w.namedValueInFragments(ctx, r.Name, p.DisplayName); err != nil {
			return err
		}
		return w.checkNamedValueKept(ctx, r.Name, p.DisplayName, "")
	},
}

func policyValue(r Resource) (string, string) {
	var p PolicyProperties
	_ = json.Unmarshal(r.Properties, &p)
	return p.Value, p.Format
}

// NamedValue returns a named value's value, secret or not.
func (c *Catalog) NamedValue(ctx context.Context, ref ServiceRef, name string) (string, Resource, error) {
	r, err := c.Get(ctx, ref, KindNamedValue, "", name)
	if err != nil {
		return "", r, err
	}
	var p NamedValueProperties
	_ = json.Unmarshal(r.Properties, &p)
	if p.Secret {
		return r.Secrets[secretValue], r, nil
	}
	if p.Value == nil {
		return "", r, nil
	}
	return *p.Value, r, nil
}
