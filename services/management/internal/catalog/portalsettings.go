package catalog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
)

// The portal settings, APIM's three singletons below portalsettings (docs/arm.md): they always
// exist, so one never written reads as its default.
const (
	PortalSignin     = "signin"
	PortalSignup     = "signup"
	PortalDelegation = "delegation"
)

// PortalSettingNames lists the portal settings in the order their collection lists them.
var PortalSettingNames = []string{PortalDelegation, PortalSignin, PortalSignup}

// secretValidationKey is the sealed delegation validation key.
const secretValidationKey = "validationKey"

// SigninProperties are the ARM properties of portalsettings/signin. Gatehouse's portal has no
// anonymous pages, so Enabled (redirect anonymous users to sign in) is always true.
type SigninProperties struct {
	Enabled *bool `json:"enabled"`
}

// SignupProperties are the ARM properties of portalsettings/signup. Gatehouse's portal has no
// self sign-up (an administrator creates users and their consumer tokens), so Enabled is
// always false; the terms of service are stored and returned, and shown nowhere.
type SignupProperties struct {
	Enabled        *bool           `json:"enabled"`
	TermsOfService *TermsOfService `json:"termsOfService"`
}

// TermsOfService are a sign-up's terms of service.
type TermsOfService struct {
	Text            string `json:"text"`
	Enabled         bool   `json:"enabled"`
	ConsentRequired bool   `json:"consentRequired"`
}

// DelegationProperties are the ARM properties of portalsettings/delegation. The URL is stored
// and returned; the validation key is sealed and leaves only through listSecrets. Gatehouse's
// portal delegates nothing, so neither delegation can be enabled.
type DelegationProperties struct {
	URL              string           `json:"url,omitempty"`
	ValidationKey    *string          `json:"validationKey,omitempty"`
	Subscriptions    *DelegationState `json:"subscriptions"`
	UserRegistration *DelegationState `json:"userRegistration"`
}

// DelegationState is whether one kind of delegation is on.
type DelegationState struct {
	Enabled bool `json:"enabled"`
}

var portalSettingBehaviour = behaviour{
	implicit: portalSettingDefault,
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		switch strings.ToLower(r.Name) {
		case PortalSignin:
			return prepareSignin(r, in)
		case PortalSignup:
			return prepareSignup(r, in)
		default:
			return prepareDelegation(r, in, old)
		}
	},
}

// portalSettingDefault is the properties of the portal setting name before any write.
func portalSettingDefault(name string) json.RawMessage {
	switch strings.ToLower(name) {
	case PortalSignin:
		return mustJSON(SigninProperties{Enabled: ptr(true)})
	case PortalSignup:
		return mustJSON(SignupProperties{Enabled: ptr(false), TermsOfService: &TermsOfService{}})
	default:
		return mustJSON(DelegationProperties{Subscriptions: &DelegationState{}, UserRegistration: &DelegationState{}})
	}
}

func ptr[T any](v T) *T { return &v }

func prepareSignin(r *Resource, in json.RawMessage) error {
	var p SigninProperties
	if err := decodeProps(in, &p); err != nil {
		return err
	}
	if p.Enabled != nil && !*p.Enabled {
		return invalid("properties.enabled", "Gatehouse's portal has no anonymous pages: every page asks for a token, so sign-in cannot be disabled (docs/arm.md)")
	}
	r.Properties = mustJSON(SigninProperties{Enabled: ptr(true)})
	return nil
}

func prepareSignup(r *Resource, in json.RawMessage) error {
	var p SignupProperties
	if err := decodeProps(in, &p); err != nil {
		return err
	}
	if p.Enabled != nil && *p.Enabled {
		return invalid("properties.enabled", "Gatehouse's portal has no self sign-up: an administrator creates users and their tokens, so sign-up cannot be enabled (docs/arm.md)")
	}
	if p.TermsOfService == nil {
		p.TermsOfService = &TermsOfService{}
	}
	if len(p.TermsOfService.Text) > 100_000 {
		return invalid("properties.termsOfService.text", "the terms of service are at most 100,000 characters")
	}
	p.Enabled = ptr(false)
	r.Properties = mustJSON(p)
	return nil
}

func prepareDelegation(r *Resource, in json.RawMessage, old *Resource) error {
	var p DelegationProperties
	if err := decodeProps(in, &p); err != nil {
		return err
	}
	if p.URL != "" {
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(p.URL) > 2000 {
			return invalid("properties.url", "url must be an absolute http or https URL of at most 2000 characters")
		}
	}
	for _, d := range []struct {
		target string
		state  *DelegationState
	}{{"properties.subscriptions.enabled", p.Subscriptions}, {"properties.userRegistration.enabled", p.UserRegistration}} {
		if d.state != nil && d.state.Enabled {
			return invalid(d.target, "Gatehouse's portal delegates neither sign-up nor subscriptions, so delegation cannot be enabled; url and validationKey are stored only (docs/arm.md)")
		}
	}
	key := ""
	if old != nil {
		key = old.Secrets[secretValidationKey]
	}
	if p.ValidationKey != nil {
		if b, err := base64.StdEncoding.DecodeString(*p.ValidationKey); err != nil || len(b) == 0 || len(*p.ValidationKey) > 1024 {
			return invalid("properties.validationKey", "validationKey must be base64, at most 1024 characters")
		}
		key = *p.ValidationKey
	}
	r.Secrets = nil
	if key != "" {
		r.Secrets = map[string]string{secretValidationKey: key}
	}
	p.ValidationKey = nil
	p.Subscriptions, p.UserRegistration = &DelegationState{}, &DelegationState{}
	r.Properties = mustJSON(p)
	return nil
}

// PortalSettings returns the three portal settings, stored or default.
func (c *Catalog) PortalSettings(ctx context.Context, ref ServiceRef) ([]Resource, error) {
	out := make([]Resource, 0, len(PortalSettingNames))
	for _, name := range PortalSettingNames {
		r, err := c.Get(ctx, ref, KindPortalSetting, "", name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// DelegationValidationKey returns the delegation's validation key ("" when none was set) and
// the setting it belongs to.
func (c *Catalog) DelegationValidationKey(ctx context.Context, ref ServiceRef) (string, Resource, error) {
	r, err := c.Get(ctx, ref, KindPortalSetting, "", PortalDelegation)
	return r.Secrets[secretValidationKey], r, err
}
