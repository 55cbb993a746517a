package catalog

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
)

// Identity provider types: an identity provider's name is its type (reference: APIM's
// IdentityProviderType).
var identityProviderTypes = []string{"aad", "aadB2C", "facebook", "google", "microsoft", "twitter"}

// secretClientSecret is an identity provider's sealed client secret.
const secretClientSecret = "clientSecret"

// IdentityProviderProperties are the ARM properties of an identity provider. They are stored and
// returned; nothing in Gatehouse signs anyone in with them (docs/arm.md). ClientSecret is empty in
// storage and on GET: it lives sealed and leaves only through listSecrets.
type IdentityProviderProperties struct {
	Type                     string   `json:"type"`
	ClientID                 string   `json:"clientId"`
	ClientSecret             *string  `json:"clientSecret,omitempty"`
	ClientLibrary            string   `json:"clientLibrary,omitempty"`
	AllowedTenants           []string `json:"allowedTenants,omitempty"`
	Authority                string   `json:"authority,omitempty"`
	SigninTenant             string   `json:"signinTenant,omitempty"`
	SigninPolicyName         string   `json:"signinPolicyName,omitempty"`
	SignupPolicyName         string   `json:"signupPolicyName,omitempty"`
	ProfileEditingPolicyName string   `json:"profileEditingPolicyName,omitempty"`
	PasswordResetPolicyName  string   `json:"passwordResetPolicyName,omitempty"`
}

var identityProviderBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p IdentityProviderProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		typ := identityProviderType(r.Name)
		if p.Type != "" && !strings.EqualFold(p.Type, typ) {
			return invalid("properties.type", "type must be the identity provider's name, '%s'", typ)
		}
		p.Type = typ
		if err := p.check(); err != nil {
			return err
		}
		if p.ClientSecret == nil && old != nil && old.Secrets[secretClientSecret] != "" {
			v := old.Secrets[secretClientSecret]
			p.ClientSecret = &v
		}
		if p.ClientSecret == nil || *p.ClientSecret == "" || len(*p.ClientSecret) > 4096 {
			return invalid("properties.clientSecret", "clientSecret is required: 1 to 4096 characters")
		}
		r.Secrets = map[string]string{secretClientSecret: *p.ClientSecret}
		p.ClientSecret = nil
		r.Properties = mustJSON(p)
		return nil
	},
}

// identityProviderType is the canonical spelling of the type an identity provider's name names
// (the name's pattern admits only the types).
func identityProviderType(name string) string {
	i := slices.IndexFunc(identityProviderTypes, func(t string) bool { return strings.EqualFold(t, name) })
	return identityProviderTypes[max(i, 0)]
}

// check validates the properties of an identity provider of type p.Type: the Azure AD settings
// only on aad and aadB2C, the B2C policies only on aadB2C.
func (p *IdentityProviderProperties) check() error {
	if p.ClientID == "" || len(p.ClientID) > 1024 {
		return invalid("properties.clientId", "clientId is required: 1 to 1024 characters")
	}
	aad := p.Type == "aad" || p.Type == "aadB2C"
	for _, f := range []struct {
		name, value string
		on          bool
	}{
		{"clientLibrary", p.ClientLibrary, aad},
		{"authority", p.Authority, aad},
		{"signinTenant", p.SigninTenant, aad},
		{"signinPolicyName", p.SigninPolicyName, p.Type == "aadB2C"},
		{"signupPolicyName", p.SignupPolicyName, p.Type == "aadB2C"},
		{"profileEditingPolicyName", p.ProfileEditingPolicyName, p.Type == "aadB2C"},
		{"passwordResetPolicyName", p.PasswordResetPolicyName, p.Type == "aadB2C"},
	} {
		if f.value != "" && !f.on {
			return invalid("properties."+f.name, "%s does not apply to a %s identity provider", f.name, p.Type)
		}
		if len(f.value) > 1024 {
			return invalid("properties."+f.name, "%s is at most 1024 characters", f.name)
		}
	}
	if len(p.AllowedTenants) > 0 && !aad {
		return invalid("properties.allowedTenants", "allowedTenants does not apply to a %s identity provider", p.Type)
	}
	if len(p.AllowedTenants) > 32 || slices.Contains(p.AllowedTenants, "") {
		return invalid("properties.allowedTenants", "allowedTenants is at most 32 tenant names, none empty")
	}
	if p.ClientLibrary != "" && !slices.Contains([]string{"ADAL", "MSAL", "MSAL-2"}, p.ClientLibrary) {
		return invalid("properties.clientLibrary", "clientLibrary is ADAL, MSAL or MSAL-2")
	}
	if p.Type == "aadB2C" && p.SigninPolicyName == "" {
		return invalid("properties.signinPolicyName", "an aadB2C identity provider needs signinPolicyName")
	}
	return nil
}

// IdentityProviderSecret returns an identity provider's client secret and the provider.
func (c *Catalog) IdentityProviderSecret(ctx context.Context, ref ServiceRef, name string) (string, Resource, error) {
	r, err := c.Get(ctx, ref, KindIdentityProvider, "", name)
	return r.Secrets[secretClientSecret], r, err
}
