package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// API types Gatehouse serves.
const (
	APITypeHTTP      = "http"
	APITypeWebSocket = "websocket"
)

// OnHandshake is the immutable system operation of every WebSocket API.
const OnHandshake = "onHandshake"

// Default subscription key parameter names (reference/apim.md §1.7).
const (
	DefaultKeyHeader = "Ocp-Apim-Subscription-Key"
	DefaultKeyQuery  = "subscription-key"
)

// KeyParameterNames names the header and query parameter that carry a subscription key.
type KeyParameterNames struct {
	Header string `json:"header"`
	Query  string `json:"query"`
}

// APIProperties are the stored ARM properties of an API.
type APIProperties struct {
	DisplayName                   string             `json:"displayName"`
	Description                   string             `json:"description,omitempty"`
	ServiceURL                    string             `json:"serviceUrl,omitempty"`
	Path                          string             `json:"path"`
	Protocols                     []string           `json:"protocols"`
	Type                          string             `json:"type"`
	APIType                       string             `json:"apiType,omitempty"`
	SubscriptionRequired          *bool              `json:"subscriptionRequired"`
	SubscriptionKeyParameterNames *KeyParameterNames `json:"subscriptionKeyParameterNames"`
	APIRevision                   string             `json:"apiRevision"`
	APIRevisionDescription        string             `json:"apiRevisionDescription,omitempty"`
	APIVersion                    string             `json:"apiVersion,omitempty"`
	APIVersionDescription         string             `json:"apiVersionDescription,omitempty"`
	APIVersionSetID               string             `json:"apiVersionSetId,omitempty"`
	IsCurrent                     *bool              `json:"isCurrent"`
	IsOnline                      bool               `json:"isOnline"`
	AuthenticationSettings        json.RawMessage    `json:"authenticationSettings,omitempty"`
	Contact                       json.RawMessage    `json:"contact,omitempty"`
	License                       json.RawMessage    `json:"license,omitempty"`
	TermsOfServiceURL             string             `json:"termsOfServiceUrl,omitempty"`
	ProvisioningState             string             `json:"provisioningState"`
}

// OperationProperties are the stored ARM properties of an operation.
type OperationProperties struct {
	DisplayName        string          `json:"displayName"`
	Method             string          `json:"method"`
	URLTemplate        string          `json:"urlTemplate"`
	Description        string          `json:"description,omitempty"`
	TemplateParameters json.RawMessage `json:"templateParameters"`
	Request            json.RawMessage `json:"request,omitempty"`
	Responses          json.RawMessage `json:"responses"`
	Policies           string          `json:"policies,omitempty"`
}

var apiBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		if _, _, isRev, _ := SplitRevision(r.Name); isRev {
			if err := refuseRevisionImport(in); err != nil {
				return err
			}
			return w.prepareRevisionWrite(ctx, r, in, old)
		}
		return w.prepareImportedAPI(ctx, r, in, old)
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		apiPath := r.Path()
		var revs []Resource
		if _, _, isRev, _ := SplitRevision(r.Name); !isRev {
			var err error
			if revs, err = w.revisionsOf(ctx, r); err != nil {
				return err
			}
		}
		for _, rev := range revs {
			if err := w.delete(ctx, rev, opts); err != nil {
				return err
			}
		}
		for _, q := range []Query{
			{Kind: KindOperation, Parent: apiPath},
			{Kind: KindPolicy, Parent: apiPath},
			{Kind: KindAPIRelease, Parent: apiPath},
			{Kind: KindDiagnostic, Parent: apiPath},
			{Kind: KindAPISchema, Parent: apiPath},
			{Kind: KindProductAPI, AnyParent: true, Name: r.Name},
			{Kind: KindGatewayAPI, AnyParent: true, Name: r.Name},
			{Kind: KindSubscription, PropEquals: map[string]string{"scope": w.scopeID(apiPath)}},
		} {
			if err := w.deleteAll(ctx, q, opts); err != nil {
				return err
			}
		}
		return nil
	},
}

// apiWriteOnly are the properties of an API write that are not stored as such: the API to copy
// operations and policies from, and an inline version set.
type apiWriteOnly struct {
	SourceAPIID   string            `json:"sourceApiId"`
	APIVersionSet *inlineVersionSet `json:"apiVersionSet"`
}

// prepareAPI validates a write of an API's current revision (the API stored under its own name).
// A new API is copied from sourceApiId when given; an updated one passes its API-wide
// properties on to its other revisions.
func (w *write) prepareAPI(ctx context.Context, r *Resource, in json.RawMessage, old *Resource) error {
	if err := decodeProps(in, &apiShape{}); err != nil {
		return err
	}
	var p APIProperties
	if err := decodePart(in, &p); err != nil {
		return err
	}
	var wo apiWriteOnly
	if err := decodePart(in, &wo); err != nil {
		return err
	}
	if err := p.normalize(); err != nil {
		return err
	}
	if err := w.c.checkEgress(p.ServiceURL); err != nil {
		return err
	}
	rev := "1"
	if old != nil {
		o := apiProps(*old)
		if o.Type != p.Type {
			return invalid("properties.type", "the type of an API cannot be changed (it is %s)", o.Type)
		}
		rev = o.APIRevision
	}
	if p.APIRevision != "" && p.APIRevision != rev {
		return invalid("properties.apiRevision", "the current revision of this API is %s; create another revision with PUT apis/%s;rev=%s and sourceApiId", rev, r.Name, p.APIRevision)
	}
	if p.IsCurrent != nil && !*p.IsCurrent {
		return invalid("properties.isCurrent", "this is the current revision; to change that, make another revision current (isCurrent true on it, or a release)")
	}
	t := true
	p.APIRevision, p.IsCurrent = rev, &t
	if _, err := w.versionSetOf(ctx, &p, wo.APIVersionSet); err != nil {
		return err
	}
	if err := w.checkPathFree(ctx, r.Name, p); err != nil {
		return err
	}
	r.Properties = mustJSON(p)
	switch {
	case old != nil:
		return w.propagate(ctx, *old, p)
	case wo.SourceAPIID != "":
		src, err := w.sourceAPI(ctx, wo.SourceAPIID)
		if err != nil {
			return err
		}
		if apiProps(src).Type != p.Type {
			return invalid("properties.sourceApiId", "the source API is of type %s, not %s", apiProps(src).Type, p.Type)
		}
		return w.copyTree(ctx, src, r.Name)
	case p.Type == APITypeWebSocket:
		return w.createOnHandshake(ctx, r.Name)
	}
	return nil
}

// prepareRevisionWrite validates a write of a non-current revision: a new one copies its
// source's operations and policies, and isCurrent true makes it current once stored.
func (w *write) prepareRevisionWrite(ctx context.Context, r *Resource, in json.RawMessage, old *Resource) error {
	from, err := w.prepareRevision(ctx, r, in, old)
	if err != nil {
		return err
	}
	var wo apiWriteOnly
	if err := decodePart(in, &wo); err != nil {
		return err
	}
	if wo.APIVersionSet != nil {
		return invalid("properties.apiVersionSet", "Can't change property for non-current revision")
	}
	var ask struct {
		IsCurrent *bool `json:"isCurrent"`
	}
	_ = json.Unmarshal(in, &ask)
	if old == nil {
		if err := w.copyTree(ctx, *from, r.Name); err != nil {
			return err
		}
	}
	if ask.IsCurrent != nil && *ask.IsCurrent {
		w.then = func(ctx context.Context, stored *Resource) error {
			cur, err := w.makeCurrent(ctx, stored.Name)
			*stored = cur
			return err
		}
	}
	return nil
}

func (p *APIProperties) normalize() error {
	if p.Type == "" {
		p.Type = p.APIType
	}
	if p.Type == "" {
		p.Type = APITypeHTTP
	}
	p.APIType = ""
	if p.Type != APITypeHTTP && p.Type != APITypeWebSocket {
		return invalid("properties.type", "API type '%s' is not supported; Gatehouse serves http and websocket APIs", p.Type)
	}
	if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 300 {
		return invalid("properties.displayName", "displayName is required and must be at most 300 characters")
	}
	if len(p.Description) > 100_000 {
		return invalid("properties.description", "description is too long")
	}
	p.Path = strings.Trim(p.Path, "/")
	if len(p.Path) > 400 || strings.ContainsAny(p.Path, "?#\\ \t\r\n") || strings.Contains(p.Path, "//") {
		return invalid("properties.path", "path must be at most 400 characters of URL path segments, without '?', '#', spaces or empty segments")
	}
	allowed, defaults := []string{"http", "https"}, []string{"https"}
	schemes := []string{"http", "https"}
	if p.Type == APITypeWebSocket {
		allowed, defaults, schemes = []string{"ws", "wss"}, []string{"wss"}, []string{"ws", "wss"}
	}
	if len(p.Protocols) == 0 {
		p.Protocols = defaults
	}
	for i, proto := range p.Protocols {
		proto = strings.ToLower(proto)
		if !slices.Contains(allowed, proto) {
			return invalid("properties.protocols", "protocol '%s' is not allowed for a %s API; use %s", p.Protocols[i], p.Type, strings.Join(allowed, " or "))
		}
		p.Protocols[i] = proto
	}
	slices.Sort(p.Protocols)
	p.Protocols = slices.Compact(p.Protocols)
	if p.ServiceURL != "" || p.Type == APITypeWebSocket {
		if err := checkServiceURL(p.ServiceURL, schemes); err != nil {
			return err
		}
	}
	if p.SubscriptionRequired == nil {
		t := true
		p.SubscriptionRequired = &t
	}
	names := KeyParameterNames{Header: DefaultKeyHeader, Query: DefaultKeyQuery}
	if k := p.SubscriptionKeyParameterNames; k != nil {
		if k.Header != "" {
			names.Header = k.Header
		}
		if k.Query != "" {
			names.Query = k.Query
		}
	}
	if !validHeaderName(names.Header) {
		return invalid("properties.subscriptionKeyParameterNames.header", "'%s' is not a valid header name", names.Header)
	}
	if strings.ContainsAny(names.Query, "&=#? ") || len(names.Query) > 256 {
		return invalid("properties.subscriptionKeyParameterNames.query", "'%s' is not a valid query parameter name", names.Query)
	}
	p.SubscriptionKeyParameterNames = &names
	if len(p.APIRevisionDescription) > 256 {
		return invalid("properties.apiRevisionDescription", "apiRevisionDescription must be at most 256 characters")
	}
	if len(p.APIVersionDescription) > 100_000 {
		return invalid("properties.apiVersionDescription", "apiVersionDescription is too long")
	}
	p.IsOnline, p.ProvisioningState = true, "Succeeded"
	return nil
}

func checkServiceURL(raw string, schemes []string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !slices.Contains(schemes, strings.ToLower(u.Scheme)) || len(raw) > 2000 || u.User != nil {
		return invalid("properties.serviceUrl", "serviceUrl must be an absolute %s URL of at most 2000 characters", strings.Join(schemes, ":// or ")+"://")
	}
	return nil
}

// checkEgress refuses a serviceUrl the egress policy denies before any name is resolved; the
// nodes check the addresses names resolve to when they dial.
func (c *Catalog) checkEgress(serviceURL string) error {
	if serviceURL == "" {
		return nil
	}
	return c.checkURLEgress("serviceUrl", serviceURL)
}

// checkURLEgress refuses the URL raw of the property field (a backend's url, an API's
// serviceUrl) when the egress policy denies it.
func (c *Catalog) checkURLEgress(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("properties."+field, "%s is not a URL", field)
	}
	if err := c.egress.CheckURL(u); err != nil {
		return invalid("properties."+field, "%s is not allowed by the operator's egress policy: %s", field, err)
	}
	return nil
}

// checkFetchEgress refuses a URL a policy fetches that the egress policy denies before any
// name is resolved (pipeline.Env.FetchCheck); the nodes check the addresses names resolve to
// when they fetch.
func (c *Catalog) checkFetchEgress(u *url.URL) error {
	if err := c.egress.CheckURL(u); err != nil {
		return fmt.Errorf("the URL is not allowed by the operator's egress policy: %w", err)
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if c > 126 || c <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// checkPathFree refuses an API path another API of the service already has, unless both
// belong to one version set with different versions (reference/apim.md §1.8). The API's own
// revisions share its path.
func (w *write) checkPathFree(ctx context.Context, apiName string, p APIProperties) error {
	others, _, err := w.tx.List(ctx, Query{Kind: KindAPI, PropEquals: map[string]string{"path": p.Path}, All: true})
	if err != nil {
		return err
	}
	for _, o := range others {
		if base, _, _, _ := SplitRevision(o.Name); strings.EqualFold(base, apiName) {
			continue
		}
		op := apiProps(o)
		if p.APIVersionSetID == "" || !strings.EqualFold(op.APIVersionSetID, p.APIVersionSetID) {
			return invalid("path", "Cannot create API '%s' with the same Path '%s' as API '%s' unless it's a part of the same version set", apiName, p.Path, o.Name)
		}
		if strings.EqualFold(op.APIVersion, p.APIVersion) {
			return invalid("properties.apiVersion", "the API '%s' already has version '%s' of this version set at path '%s'", o.Name, p.APIVersion, p.Path)
		}
	}
	return nil
}

func (w *write) createOnHandshake(ctx context.Context, apiName string) error {
	op := Resource{ServiceID: w.svc.ID, Kind: KindOperation, Parent: "apis/" + apiName, Name: OnHandshake,
		Properties: mustJSON(OperationProperties{
			DisplayName: OnHandshake, Method: "GET", URLTemplate: "/",
			Description:        "The WebSocket handshake. Policies on this operation run on every upgrade request.",
			TemplateParameters: json.RawMessage("[]"), Responses: json.RawMessage("[]"),
		})}
	return w.tx.Put(ctx, &op)
}

// apiOf loads the API at path "apis/{name}".
func apiOf(ctx context.Context, r Reader, apiPath string) (APIProperties, error) {
	_, name := splitParent(apiPath)
	res, err := r.Get(ctx, KindAPI, "", name)
	if err != nil {
		return APIProperties{}, err
	}
	var p APIProperties
	err = json.Unmarshal(res.Properties, &p)
	return p, err
}

var errWebSocketOperation = invalid("properties", "Operation entity cannot be defined by user for web socket api type.")

var operationBehaviour = behaviour{
	parentKind: parentOf(KindAPI),
	writable: func(ctx context.Context, w *write, parent, name string) error {
		api, err := apiOf(ctx, w.tx, parent)
		if err != nil {
			return err
		}
		if api.Type == APITypeWebSocket {
			return errWebSocketOperation
		}
		return nil
	},
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p OperationProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if err := decodeProps(in, &operationShape{}); err != nil {
			return err
		}
		if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 300 {
			return invalid("properties.displayName", "displayName is required and must be at most 300 characters")
		}
		p.Method = strings.ToUpper(strings.TrimSpace(p.Method))
		if p.Method == "" || !validHeaderName(p.Method) {
			return invalid("properties.method", "method is required: an HTTP method such as GET or POST")
		}
		if !strings.HasPrefix(p.URLTemplate, "/") || len(p.URLTemplate) > 1000 || strings.ContainsAny(p.URLTemplate, " #") {
			return invalid("properties.urlTemplate", "urlTemplate is required and must start with '/', e.g. /customers/{cid}")
		}
		if err := checkTemplate(p.URLTemplate); err != nil {
			return err
		}
		for field, raw := range map[string]*json.RawMessage{"templateParameters": &p.TemplateParameters, "responses": &p.Responses} {
			if len(*raw) == 0 || string(*raw) == "null" {
				*raw = json.RawMessage("[]")
			} else if (*raw)[0] != '[' {
				return invalid("properties."+field, "%s must be an array", field)
			}
		}
		if len(p.Request) > 0 && string(p.Request) != "null" && p.Request[0] != '{' {
			return invalid("properties.request", "request must be an object")
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		return w.deleteAll(ctx, Query{Kind: KindPolicy, Parent: r.Path()}, opts)
	},
}

// checkTemplate makes sure {parameters} in a URL template are balanced and named.
func checkTemplate(t string) error {
	depth := 0
	start := 0
	for i, c := range t {
		switch c {
		case '{':
			if depth > 0 {
				return invalid("properties.urlTemplate", "nested '{' in urlTemplate at position %d", i)
			}
			depth, start = 1, i
		case '}':
			if depth == 0 || i == start+1 {
				return invalid("properties.urlTemplate", "unbalanced or empty '{}' in urlTemplate at position %d", i)
			}
			depth = 0
		}
	}
	if depth != 0 {
		return invalid("properties.urlTemplate", "unclosed '{' in urlTemplate")
	}
	return nil
}

// parentOf accepts parents of the form "{kind.Segment}/{name}".
func parentOf(k *Kind) func(parent string) (*Kind, string, error) {
	return func(parent string) (*Kind, string, error) {
		seg, name, ok := strings.Cut(parent, "/")
		if !ok || seg != k.Segment || name == "" || strings.Contains(name, "/") {
			return nil, "", notFound(k.What)
		}
		return k, name, nil
	}
}

// scopeID is the full ARM id of a resource path of the service, the form subscription scopes
// and owner ids are stored in.
func (w *write) scopeID(path string) string { return ServiceID(w.svc.Ref) + "/" + path }

// ServiceID is the ARM id of a service.
func ServiceID(ref ServiceRef) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ApiManagement/service/%s",
		ref.Subscription, ref.ResourceGroup, ref.Name)
}

// ParseServiceID reads a service's ARM id as ServiceID writes it, its fixed segments in any case.
func ParseServiceID(id string) (ServiceRef, bool) {
	parts := strings.Split(id, "/")
	if len(parts) != 9 || parts[0] != "" || !strings.EqualFold(parts[1], "subscriptions") || !strings.EqualFold(parts[3], "resourceGroups") ||
		!strings.EqualFold(parts[5], "providers") || !strings.EqualFold(parts[6], "Microsoft.ApiManagement") || !strings.EqualFold(parts[7], "service") {
		return ServiceRef{}, false
	}
	ref := ServiceRef{Subscription: parts[2], ResourceGroup: parts[4], Name: parts[8]}
	return ref, ref.Subscription != "" && ref.ResourceGroup != "" && ref.Name != ""
}

// apiShape and operationShape type the nested objects that APIProperties and
// OperationProperties keep as raw JSON (reference/apim.md §2.7), so that decodeProps refuses a
// field of the wrong type there too, and one that APIM does not define.
type (
	apiShape struct {
		APIProperties
		apiWriteOnly
		apiImport
		AuthenticationSettings *struct {
			OAuth2                       *oAuth2Shape  `json:"oAuth2"`
			OpenID                       *openIDShape  `json:"openid"`
			OAuth2AuthenticationSettings []oAuth2Shape `json:"oAuth2AuthenticationSettings"`
			OpenIDAuthenticationSettings []openIDShape `json:"openidAuthenticationSettings"`
		} `json:"authenticationSettings"`
		Contact *struct {
			Name  string `json:"name"`
			Email string `json:"email"`
			URL   string `json:"url"`
		} `json:"contact"`
		License *struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"license"`
	}
	oAuth2Shape struct {
		AuthorizationServerID string `json:"authorizationServerId"`
		Scope                 string `json:"scope"`
	}
	openIDShape struct {
		OpenIDProviderID          string   `json:"openidProviderId"`
		BearerTokenSendingMethods []string `json:"bearerTokenSendingMethods"`
	}
	operationShape struct {
		OperationProperties
		TemplateParameters []parameterShape `json:"templateParameters"`
		Request            *struct {
			Description     string                `json:"description"`
			Headers         []parameterShape      `json:"headers"`
			QueryParameters []parameterShape      `json:"queryParameters"`
			Representations []representationShape `json:"representations"`
		} `json:"request"`
		Responses []struct {
			StatusCode      int                   `json:"statusCode"`
			Description     string                `json:"description"`
			Headers         []parameterShape      `json:"headers"`
			Representations []representationShape `json:"representations"`
		} `json:"responses"`
	}
	parameterShape struct {
		Name         string                  `json:"name"`
		Type         string                  `json:"type"`
		Description  string                  `json:"description"`
		DefaultValue string                  `json:"defaultValue"`
		Required     bool                    `json:"required"`
		Values       []string                `json:"values"`
		SchemaID     string                  `json:"schemaId"`
		TypeName     string                  `json:"typeName"`
		Examples     map[string]exampleShape `json:"examples"`
	}
	exampleShape struct {
		Summary       string `json:"summary"`
		Description   string `json:"description"`
		Value         any    `json:"value"`
		ExternalValue string `json:"externalValue"`
	}
	representationShape struct {
		ContentType    string                  `json:"contentType"`
		SchemaID       string                  `json:"schemaId"`
		TypeName       string                  `json:"typeName"`
		FormParameters []parameterShape        `json:"formParameters"`
		Examples       map[string]exampleShape `json:"examples"`
	}
)
