package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v4"
)

// ExportFormat is one format of GET apis/{id}?export=true&format=… (docs/import-export.md).
type ExportFormat struct {
	// Spec is the description language: "openapi" (3.0), "swagger" (2.0) or "asyncapi" (2.6).
	Spec string
	// YAML marks a YAML document; the others are JSON.
	YAML bool
	// Link marks a link format: the answer is a link to the document, in Inline's format.
	Link   bool
	Inline string
	// Result is the format the answer names (APIM's ExportResultFormat for link formats).
	Result string
}

// exportFormats are the export formats Gatehouse implements: APIM's link formats and the
// inline formats of its import, plus AsyncAPI for WebSocket APIs.
var exportFormats = map[string]ExportFormat{
	"openapi+json":       {Spec: "openapi", Result: "openapi+json"},
	"openapi":            {Spec: "openapi", YAML: true, Result: "openapi"},
	"openapi+json-link":  {Spec: "openapi", Link: true, Inline: "openapi+json", Result: "openapi+json-link"},
	"openapi-link":       {Spec: "openapi", YAML: true, Link: true, Inline: "openapi", Result: "openapi-link"},
	"swagger-json":       {Spec: "swagger", Result: "swagger-json"},
	"swagger-link":       {Spec: "swagger", Link: true, Inline: "swagger-json", Result: "swagger-link-json"},
	"swagger-link-json":  {Spec: "swagger", Link: true, Inline: "swagger-json", Result: "swagger-link-json"},
	"asyncapi+json":      {Spec: "asyncapi", Result: "asyncapi+json"},
	"asyncapi":           {Spec: "asyncapi", YAML: true, Result: "asyncapi"},
	"asyncapi+json-link": {Spec: "asyncapi", Link: true, Inline: "asyncapi+json", Result: "asyncapi+json-link"},
	"asyncapi-link":      {Spec: "asyncapi", YAML: true, Link: true, Inline: "asyncapi", Result: "asyncapi-link"},
}

// ExportFormatOf returns the export format named f, or a ValidationError naming it.
func ExportFormatOf(f string) (ExportFormat, error) {
	ef, ok := exportFormats[strings.ToLower(f)]
	if !ok {
		return ExportFormat{}, invalid("format",
			"Gatehouse exports openapi, openapi+json, swagger-json, asyncapi and asyncapi+json, inline or as -link; the format '%s' is not supported (docs/import-export.md)", f)
	}
	return ef, nil
}

// ExportAPI describes the API name of the service ref in the format f (ExportFormatOf): an HTTP
// API in OpenAPI 3.0 or Swagger 2.0 from its operations and imported schemas, a WebSocket API
// in AsyncAPI 2.6. gateways are the base URLs of the gateway nodes serving it ("https://host"),
// which become its servers. The document is JSON, or YAML for f.YAML.
func (c *Catalog) ExportAPI(ctx context.Context, ref ServiceRef, name string, f ExportFormat, gateways []string) ([]byte, error) {
	api, err := c.Get(ctx, ref, KindAPI, "", name)
	if err != nil {
		return nil, err
	}
	p := apiProps(api)
	var doc any
	switch {
	case f.Spec == "asyncapi" && p.Type != APITypeWebSocket:
		return nil, invalid("format", "AsyncAPI describes WebSocket APIs; export the http API '%s' as openapi+json", api.Name)
	case f.Spec != "asyncapi" && p.Type == APITypeWebSocket:
		return nil, invalid("format", "the WebSocket API '%s' is described by AsyncAPI: export it with format=asyncapi+json", api.Name)
	case f.Spec == "asyncapi":
		doc = asyncAPIOf(p, gateways)
	default:
		if doc, err = c.openAPIOf(ctx, ref, api, p, gateways, f.Spec == "swagger"); err != nil {
			return nil, err
		}
	}
	out, err := json.Marshal(doc)
	if err != nil || !f.YAML {
		return out, err
	}
	var generic any
	if err := json.Unmarshal(out, &generic); err != nil {
		return nil, err
	}
	return yaml.Marshal(generic)
}

// openAPIOf builds the OpenAPI 3.0 document of the HTTP API api (or its Swagger 2.0
// conversion, for swagger).
func (c *Catalog) openAPIOf(ctx context.Context, ref ServiceRef, api Resource, p APIProperties, gateways []string, swagger bool) (any, error) {
	ops, err := c.childrenOf(ctx, ref, KindOperation, api.Path())
	if err != nil {
		return nil, err
	}
	schemas, err := c.childrenOf(ctx, ref, KindAPISchema, api.Path())
	if err != nil {
		return nil, err
	}
	version := p.APIVersion
	if version == "" {
		version = "1.0"
	}
	doc := &openapi3.T{OpenAPI: "3.0.1", Info: &openapi3.Info{Title: p.DisplayName, Description: p.Description, Version: version},
		Paths: openapi3.NewPaths(), Components: &openapi3.Components{Schemas: componentSchemas(schemas)}}
	for _, g := range gateways {
		doc.Servers = append(doc.Servers, &openapi3.Server{URL: strings.TrimSuffix(g, "/") + "/" + p.Path})
	}
	if len(doc.Servers) == 0 {
		doc.Servers = openapi3.Servers{{URL: "/" + p.Path}}
	}
	if *p.SubscriptionRequired {
		doc.Components.SecuritySchemes, doc.Security = keySchemes(p)
	}
	slices.SortFunc(ops, func(a, b Resource) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range ops {
		if err := addOperation(doc, r); err != nil {
			return nil, err
		}
	}
	if !swagger {
		return doc, nil
	}
	d2, err := openapi2conv.FromV3(doc)
	if err != nil {
		return nil, fmt.Errorf("convert the API %s to Swagger 2.0: %w", api.Name, err)
	}
	return d2, nil
}

// childrenOf lists every resource of kind under the API at apiPath of the service ref, a
// revision's own ("apis/echo;rev=2") or the current revision's.
func (c *Catalog) childrenOf(ctx context.Context, ref ServiceRef, kind *Kind, apiPath string) ([]Resource, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, err
	}
	parent, _, err := storedPath(ctx, readerFor(c.store, svc.ID), kind, apiPath, "")
	if err != nil {
		return nil, err
	}
	rs, _, err := c.store.List(ctx, svc.ID, Query{Kind: kind, Parent: parent, All: true})
	return rs, err
}

// componentSchemas merges the component schemas of an API's OpenAPI components schemas.
func componentSchemas(schemas []Resource) openapi3.Schemas {
	out := openapi3.Schemas{}
	for _, s := range schemas {
		var p APISchemaProperties
		if json.Unmarshal(s.Properties, &p) != nil || p.ContentType != ComponentsContentType || isNull(p.Document.Components) {
			continue
		}
		var comps struct {
			Schemas openapi3.Schemas `json:"schemas"`
		}
		if json.Unmarshal(p.Document.Components, &comps) == nil {
			for k, v := range comps.Schemas {
				out[k] = v
			}
		}
	}
	return out
}

// keySchemes are the subscription key schemes of the API and the requirement of either, as
// APIM's exports name them.
func keySchemes(p APIProperties) (openapi3.SecuritySchemes, openapi3.SecurityRequirements) {
	names := p.SubscriptionKeyParameterNames
	return openapi3.SecuritySchemes{
			"apiKeyHeader": {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("header").WithName(names.Header)},
			"apiKeyQuery":  {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("query").WithName(names.Query)},
		}, openapi3.SecurityRequirements{
			openapi3.NewSecurityRequirement().Authenticate("apiKeyHeader"),
			openapi3.NewSecurityRequirement().Authenticate("apiKeyQuery"),
		}
}

// addOperation adds the operation r to doc under its URL template (its query part, if any,
// left out) and method, its name as operationId.
func addOperation(doc *openapi3.T, r Resource) error {
	var s operationShape
	if err := json.Unmarshal(r.Properties, &s); err != nil {
		return fmt.Errorf("read operation %s: %w", r.Name, err)
	}
	path, _, _ := strings.Cut(s.URLTemplate, "?")
	item := doc.Paths.Value(path)
	if item == nil {
		item = &openapi3.PathItem{}
		doc.Paths.Set(path, item)
	}
	op := &openapi3.Operation{OperationID: r.Name, Summary: s.DisplayName, Description: s.Description, Responses: openapi3.NewResponses()}
	for _, tp := range s.TemplateParameters {
		op.AddParameter(parameterOf(tp, openapi3.ParameterInPath, true))
	}
	if s.Request != nil {
		for _, q := range s.Request.QueryParameters {
			op.AddParameter(parameterOf(q, openapi3.ParameterInQuery, q.Required))
		}
		for _, h := range s.Request.Headers {
			op.AddParameter(parameterOf(h, openapi3.ParameterInHeader, h.Required))
		}
		if len(s.Request.Representations) > 0 {
			body := openapi3.NewRequestBody().WithDescription(s.Request.Description).WithContent(contentOf(s.Request.Representations))
			op.RequestBody = &openapi3.RequestBodyRef{Value: body}
		}
	}
	for _, resp := range s.Responses {
		out := openapi3.NewResponse().WithDescription(resp.Description).WithContent(contentOf(resp.Representations))
		op.AddResponse(resp.StatusCode, out)
	}
	if op.Responses.Len() == 0 {
		op.Responses.Set("default", &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription("")})
	}
	item.SetOperation(s.Method, op)
	return nil
}

// parameterOf maps APIM's ParameterContract to an OpenAPI parameter in in.
func parameterOf(p parameterShape, in string, required bool) *openapi3.Parameter {
	typ := p.Type
	if typ == "" {
		typ = "string"
	}
	schema := &openapi3.Schema{Type: &openapi3.Types{typ}}
	if p.DefaultValue != "" {
		schema.Default = p.DefaultValue
	}
	for _, v := range p.Values {
		schema.Enum = append(schema.Enum, v)
	}
	return &openapi3.Parameter{Name: p.Name, In: in, Description: p.Description, Required: required,
		Schema: &openapi3.SchemaRef{Value: schema}}
}

// contentOf maps representations to OpenAPI content, a representation naming a type
// referring to it among the component schemas.
func contentOf(reps []representationShape) openapi3.Content {
	content := openapi3.Content{}
	for _, r := range reps {
		mt := openapi3.NewMediaType()
		if r.TypeName != "" {
			mt.Schema = openapi3.NewSchemaRef("#/components/schemas/"+r.TypeName, nil)
		}
		content[r.ContentType] = mt
	}
	return content
}

// asyncAPIOf builds the AsyncAPI 2.6 document of the WebSocket API p: one channel at its path,
// a server per gateway and protocol, and the subscription key schemes.
func asyncAPIOf(p APIProperties, gateways []string) map[string]any {
	version := p.APIVersion
	if version == "" {
		version = "1.0"
	}
	info := map[string]any{"title": p.DisplayName, "version": version}
	if p.Description != "" {
		info["description"] = p.Description
	}
	doc := map[string]any{"asyncapi": "2.6.0", "info": info}
	var security []map[string][]string
	if *p.SubscriptionRequired {
		names := p.SubscriptionKeyParameterNames
		doc["components"] = map[string]any{"securitySchemes": map[string]any{
			"subscriptionKeyHeader": map[string]any{"type": "httpApiKey", "in": "header", "name": names.Header,
				"description": "The subscription key in a header of the upgrade request."},
			"subscriptionKeyQuery": map[string]any{"type": "httpApiKey", "in": "query", "name": names.Query,
				"description": "The subscription key in the query of the upgrade request."},
		}}
		security = []map[string][]string{{"subscriptionKeyHeader": {}}, {"subscriptionKeyQuery": {}}}
	}
	servers := map[string]any{}
	for i, g := range gateways {
		u, err := url.Parse(g)
		if err != nil || u.Host == "" {
			continue
		}
		for _, proto := range p.Protocols {
			s := map[string]any{"url": proto + "://" + u.Host, "protocol": proto}
			if security != nil {
				s["security"] = security
			}
			servers[fmt.Sprintf("gateway%d-%s", i+1, proto)] = s
		}
	}
	if len(servers) > 0 {
		doc["servers"] = servers
	}
	message := map[string]any{"name": "message", "title": "A WebSocket message",
		"description": "Gatehouse relays text and binary frames verbatim; the API does not describe their payload.", "payload": map[string]any{}}
	doc["channels"] = map[string]any{"/" + p.Path: map[string]any{
		"description": "The WebSocket API " + p.DisplayName + ", opened with an upgrade request (GET) at this path.",
		"bindings":    map[string]any{"ws": map[string]any{"method": "GET", "bindingVersion": "0.1.0"}},
		"publish":     map[string]any{"operationId": "send", "summary": "Messages the client sends.", "message": message},
		"subscribe":   map[string]any{"operationId": "receive", "summary": "Messages the client receives.", "message": message},
	}}
	return doc
}
