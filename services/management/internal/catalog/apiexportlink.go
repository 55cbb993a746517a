package catalog

import (
	"context"
	"crypto/hmac"
	"errors"
	"time"
)

// ErrInvalidExportLink means an export link is malformed, expired, wrongly signed, or names an
// API that is gone. Callers learn nothing about which.
var ErrInvalidExportLink = errors.New("invalid export link")

// ExportLinkLifetime is how long an export link works, as APIM's blob links (five minutes; the
// expiry is kept to the minute, so a link works four to five minutes).
const ExportLinkLifetime = 5 * time.Minute

// ExportLinkToken returns the token of a link to the export of the API name of the service ref
// in the inline format f: the API's internal id, an expiry and a signature over both and f,
// made with the service's user token key (kept sealed with the service) under its own label, so
// that it is never a user token.
func (c *Catalog) ExportLinkToken(ctx context.Context, ref ServiceRef, name, f string) (string, error) {
	api, err := c.Get(ctx, ref, KindAPI, "", name)
	if err != nil {
		return "", err
	}
	keys, err := c.store.ServiceSecrets(ctx, api.ServiceID, newUserTokenKeys)
	if err != nil {
		return "", err
	}
	exp := c.now().Add(ExportLinkLifetime).UTC().Format(tokenExpiryFormat)
	return api.ID + "&" + exp + "&" + signToken(keys[userTokenSecret(secretGatewayPrimary)], exportLabel(f, api.ID), exp), nil
}

// OpenExportLink checks an export link's token for the inline format f and returns the service
// and the name of the API it exports. Every failure of the token is ErrInvalidExportLink.
func (c *Catalog) OpenExportLink(ctx context.Context, token, f string) (ServiceRef, string, error) {
	t, api, err := c.tokenHolder(ctx, token, KindAPI, ErrInvalidExportLink)
	if err != nil {
		return ServiceRef{}, "", err
	}
	keys, err := c.store.ServiceSecrets(ctx, api.ServiceID, newUserTokenKeys)
	if err != nil {
		return ServiceRef{}, "", err
	}
	want := signToken(keys[userTokenSecret(secretGatewayPrimary)], exportLabel(f, api.ID), t.exp)
	if !hmac.Equal([]byte(want), []byte(t.sig)) {
		return ServiceRef{}, "", ErrInvalidExportLink
	}
	svc, err := c.store.GetServiceByID(ctx, api.ServiceID)
	if err != nil {
		return ServiceRef{}, "", err
	}
	return svc.Ref, api.Name, nil
}

// exportLabel is what an export link's signature covers besides its expiry.
func exportLabel(f, apiID string) string { return "export\x00" + f + "\x00" + apiID }
