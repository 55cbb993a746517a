package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
)

// ServiceInput is the body of a service PUT or PATCH.
type ServiceInput struct {
	Location   string            `json:"location"`
	SKU        *ServiceSKU       `json:"sku"`
	Tags       map[string]string `json:"tags"`
	Properties json.RawMessage   `json:"properties"`
}

// ServiceSKU is the pricing tier. Gatehouse keeps it for compatibility; it limits nothing.
type ServiceSKU struct {
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
}

// ServiceProperties are the stored properties of a service.
type ServiceProperties struct {
	PublisherEmail          string `json:"publisherEmail"`
	PublisherName           string `json:"publisherName"`
	NotificationSenderEmail string `json:"notificationSenderEmail,omitempty"`
	ProvisioningState       string `json:"provisioningState"`
	TargetProvisioningState string `json:"targetProvisioningState"`
	CreatedAtUTC            string `json:"createdAtUtc"`
	VirtualNetworkType      string `json:"virtualNetworkType"`
	PlatformVersion         string `json:"platformVersion"`
	PublicNetworkAccess     string `json:"publicNetworkAccess"`
	DisableGateway          bool   `json:"disableGateway"`
}

// serviceShape is what a service PUT or PATCH may hold in properties: ServiceProperties and
// the read-only properties a GET returns, which are ignored as ARM ignores read-only values.
type serviceShape struct {
	ServiceProperties
	ManagementAPIURL string `json:"managementApiUrl"`
}

var skuNames = []string{"Developer", "Standard", "Premium", "Basic", "Consumption", "Isolated", "BasicV2", "StandardV2", "PremiumV2"}

// GetService returns a service.
func (c *Catalog) GetService(ctx context.Context, ref ServiceRef) (Service, error) {
	return c.store.GetService(ctx, ref)
}

// ListServices lists a tenant's services, in one resource group or all.
func (c *Catalog) ListServices(ctx context.Context, subscription, resourceGroup string, page Page) ([]Service, int, error) {
	return c.store.ListServices(ctx, subscription, resourceGroup, page)
}

// ListServicesIn lists the services of the tenants subscriptions, or of every tenant when
// subscriptions holds "*", sorted by tenant, resource group and name.
func (c *Catalog) ListServicesIn(ctx context.Context, subscriptions []string, page Page) ([]Service, int, error) {
	return c.store.ListServicesIn(ctx, subscriptions, page)
}

// PutService creates or replaces a service. It reports whether it created.
func (c *Catalog) PutService(ctx context.Context, ref ServiceRef, in ServiceInput, opts Options) (Service, bool, error) {
	if err := ValidServiceName(ref.Name); err != nil {
		return Service{}, false, err
	}
	cur, err := c.store.GetService(ctx, ref)
	var old *Service
	switch {
	case err == nil:
		old = &cur
	case !errors.Is(err, ErrNotFound):
		return Service{}, false, err
	}
	return c.writeService(ctx, ref, old, in, in.Properties, opts)
}

// PatchService merges in into an existing service.
func (c *Catalog) PatchService(ctx context.Context, ref ServiceRef, in ServiceInput, opts Options) (Service, error) {
	cur, err := c.store.GetService(ctx, ref)
	if err != nil {
		return Service{}, err
	}
	props, err := mergePatch(cur.Properties, in.Properties)
	if err != nil {
		return Service{}, err
	}
	if in.Location == "" {
		in.Location = cur.Location
	}
	if in.SKU == nil {
		var sku ServiceSKU
		_ = json.Unmarshal(cur.SKU, &sku)
		in.SKU = &sku
	}
	if in.Tags == nil {
		in.Tags = cur.Tags
	}
	s, _, err := c.writeService(ctx, ref, &cur, in, props, opts)
	return s, err
}

func (c *Catalog) writeService(ctx context.Context, ref ServiceRef, old *Service, in ServiceInput, rawProps json.RawMessage, opts Options) (Service, bool, error) {
	var etag *string
	if old != nil {
		etag = &old.ETag
	}
	if err := checkPreconditions(etag, opts); err != nil {
		return Service{}, false, err
	}
	if strings.TrimSpace(in.Location) == "" {
		return Service{}, false, invalid("location", "location is required")
	}
	if in.SKU == nil || !slices.Contains(skuNames, in.SKU.Name) {
		return Service{}, false, invalid("sku.name", "sku.name must be one of %s", strings.Join(skuNames, ", "))
	}
	if in.SKU.Capacity < 0 {
		return Service{}, false, invalid("sku.capacity", "sku.capacity must not be negative")
	}
	var shape serviceShape
	if err := decodeProps(rawProps, &shape); err != nil {
		return Service{}, false, err
	}
	p := shape.ServiceProperties
	if p.VirtualNetworkType != "" && p.VirtualNetworkType != "None" {
		return Service{}, false, invalid("properties.virtualNetworkType", "Gatehouse does not join services to virtual networks; virtualNetworkType must be None")
	}
	if p.DisableGateway {
		return Service{}, false, invalid("properties.disableGateway", "Gatehouse cannot disable a service's gateways this way; disableGateway must be false (delete the gateway resources or stop their nodes)")
	}
	if p.PublicNetworkAccess != "" && p.PublicNetworkAccess != "Enabled" {
		return Service{}, false, invalid("properties.publicNetworkAccess", "Gatehouse does not restrict network access to a service; publicNetworkAccess must be Enabled")
	}
	if _, err := mail.ParseAddress(p.PublisherEmail); err != nil || len(p.PublisherEmail) > 100 {
		return Service{}, false, invalid("properties.publisherEmail", "publisherEmail must be an e-mail address of at most 100 characters")
	}
	if strings.TrimSpace(p.PublisherName) == "" || len(p.PublisherName) > 100 {
		return Service{}, false, invalid("properties.publisherName", "publisherName is required, at most 100 characters")
	}
	now := c.now().UTC()
	p.ProvisioningState, p.TargetProvisioningState = "Succeeded", ""
	p.VirtualNetworkType, p.PlatformVersion = "None", "stv2"
	if p.PublicNetworkAccess == "" {
		p.PublicNetworkAccess = "Enabled"
	}
	p.CreatedAtUTC = now.Format(dateFormat)
	s := Service{Ref: ref, Location: in.Location, SKU: mustJSON(in.SKU), Tags: in.Tags, Properties: nil}
	if old != nil {
		s.ID, s.Created, s.Ref = old.ID, old.Created, old.Ref
		var oldProps ServiceProperties
		_ = json.Unmarshal(old.Properties, &oldProps)
		p.CreatedAtUTC = oldProps.CreatedAtUTC
	}
	if s.Tags == nil {
		s.Tags = map[string]string{}
	}
	s.Properties = mustJSON(p)
	if err := c.store.PutService(ctx, &s); err != nil {
		return Service{}, false, err
	}
	if err := c.ensureBuiltInGroups(ctx, s); err != nil {
		return Service{}, false, fmt.Errorf("built-in groups of service %s: %w", s.Ref.Name, err)
	}
	return s, old == nil, nil
}

// DeleteService removes a service and all it holds.
func (c *Catalog) DeleteService(ctx context.Context, ref ServiceRef, opts Options) error {
	s, err := c.store.GetService(ctx, ref)
	if err != nil {
		return err
	}
	if opts.IfMatch != "" && !ETagMatch(s.ETag, opts.IfMatch) {
		return ErrPreconditionFailed
	}
	return c.store.DeleteService(ctx, s.ID)
}

// dateFormat is how APIM writes dates: yyyy-MM-ddTHH:mm:ssZ.
const dateFormat = "2006-01-02T15:04:05Z"

// ServiceNameTaken reports whether a service of the tenant subscription, in any resource group,
// has name in any case.
func (c *Catalog) ServiceNameTaken(ctx context.Context, subscription, name string) (bool, error) {
	for skip := 0; ; {
		svcs, total, err := c.store.ListServices(ctx, subscription, "", Page{Skip: skip})
		if err != nil {
			return false, err
		}
		for _, s := range svcs {
			if strings.EqualFold(s.Ref.Name, name) {
				return true, nil
			}
		}
		skip += len(svcs)
		if len(svcs) == 0 || skip >= total {
			return false, nil
		}
	}
}
