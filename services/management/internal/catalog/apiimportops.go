package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// ComponentsContentType is the content type of an API schema holding OpenAPI 3 components,
// the form an import stores its document's components in.
const ComponentsContentType = "application/vnd.oai.openapi.components+json"

// Shapes of the operation properties an import writes; their JSON is APIM's
// (OperationContract: ParameterContract, RequestContract, ResponseContract).
type (
	importedParam struct {
		Name         string   `json:"name"`
		Type         string   `json:"type"`
		Description  string   `json:"description,omitempty"`
		DefaultValue string   `json:"defaultValue,omitempty"`
		Required     bool     `json:"required"`
		Values       []string `json:"values"`
	}
	importedRepresentation struct {
		ContentType string `json:"contentType"`
		SchemaID    string `json:"schemaId,omitempty"`
		TypeName    string `json:"typeName,omitempty"`
	}
	importedRequest struct {
		Description     string                   `json:"description,omitempty"`
		QueryParameters []importedParam          `json:"queryParameters"`
		Headers         []importedParam          `json:"headers"`
		Representations []importedRepresentation `json:"representations"`
	}
	importedResponse struct {
		StatusCode      int                      `json:"statusCode"`
		Description     string                   `json:"description,omitempty"`
		Headers         []importedParam          `json:"headers"`
		Representations []importedRepresentation `json:"representations"`
	}
)

// importedSchemaName is the name of the API schema an import of the API apiName stores its
// components in: the same for every import of the API, so a re-import replaces it.
func importedSchemaName(apiName string) string {
	sum := sha256.Sum256([]byte("components\x00" + strings.ToLower(apiName)))
	return hex.EncodeToString(sum[:12])
}

// importOperations makes the operations of the API apiName those of doc, as an APIM import
// does: an operation whose name (its normalised operationId) already exists is updated in
// place and keeps its policies, the others are created, and operations doc does not define
// are deleted with their policies. doc's component schemas become the API schema
// importedSchemaName.
func (w *write) importOperations(ctx context.Context, apiName string, doc *openapi3.T) error {
	parent := KindAPI.Segment + "/" + apiName
	schemaID := ""
	if doc.Components != nil && len(doc.Components.Schemas) > 0 {
		schemaID = importedSchemaName(apiName)
		if err := w.putImportedSchema(ctx, parent, schemaID, doc.Components.Schemas); err != nil {
			return err
		}
	}
	ops, err := operationsOf(doc, schemaID)
	if err != nil {
		return err
	}
	existing, _, err := w.tx.List(ctx, Query{Kind: KindOperation, Parent: parent, All: true})
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, op := range ops {
		r := Resource{ServiceID: w.svc.ID, Kind: KindOperation, Parent: parent, Name: op.name, Properties: mustJSON(op.props)}
		if i := slices.IndexFunc(existing, func(o Resource) bool { return strings.EqualFold(o.Name, op.name) }); i >= 0 {
			r.ID, r.Name, r.Created = existing[i].ID, existing[i].Name, existing[i].Created
		}
		if err := w.tx.Put(ctx, &r); err != nil {
			return err
		}
		kept[strings.ToLower(op.name)] = true
	}
	for _, o := range existing {
		if !kept[strings.ToLower(o.Name)] {
			if err := w.delete(ctx, o, Options{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// putImportedSchema stores schemas as the API schema name of the API at parent.
func (w *write) putImportedSchema(ctx context.Context, parent, name string, schemas openapi3.Schemas) error {
	props := APISchemaProperties{ContentType: ComponentsContentType,
		Document: APISchemaDocument{Components: mustJSON(map[string]any{"schemas": schemas})}}
	r := Resource{ServiceID: w.svc.ID, Kind: KindAPISchema, Parent: parent, Name: name, Properties: mustJSON(props)}
	old, err := w.tx.Get(ctx, KindAPISchema, parent, name)
	if err == nil {
		r.ID, r.Name, r.Created = old.ID, old.Name, old.Created
	}
	return w.tx.Put(ctx, &r)
}

// importedOperation is one operation read from a description.
type importedOperation struct {
	name  string
	props OperationProperties
}

// operationsOf reads doc's operations in path and method order, named as APIM names them
// (operationName) and referring to the API schema schemaID for component schemas.
func operationsOf(doc *openapi3.T, schemaID string) ([]importedOperation, error) {
	if doc.Paths == nil {
		return nil, nil
	}
	paths := doc.Paths.Map()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []importedOperation
	taken := map[string]bool{}
	for _, path := range keys {
		item := paths[path]
		if err := checkTemplate(path); err != nil || !strings.HasPrefix(path, "/") {
			return nil, invalid("properties.value", "the path '%s' of the description is not a URL template Gatehouse can route", path)
		}
		methods := make([]string, 0)
		for m := range item.Operations() {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		for _, method := range methods {
			op := item.Operations()[method]
			name := operationName(op.OperationID, method, path, taken)
			taken[name] = true
			out = append(out, importedOperation{name: name, props: operationProps(op, item.Parameters, method, path, name, schemaID)})
		}
	}
	return out, nil
}

// operationName is APIM's name for an imported operation: its operationId lower-cased, each run
// of other characters than letters and digits made one '-', trimmed, at most 76 characters;
// without an operationId, the same of method and path ("get-foo"). A name already taken gets
// the first free suffix -1 … -999.
func operationName(operationID, method, path string, taken map[string]bool) string {
	base := normalizeName(operationID)
	if base == "" {
		base = normalizeName(method + "-" + path)
	}
	if base == "" {
		base = "operation"
	}
	name := base
	for i := 1; taken[name] && i < 1000; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	return name
}

// normalizeName lower-cases s and makes each run of characters other than a-z and 0-9 one '-',
// trimmed, at most 76 characters.
func normalizeName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return strings.TrimRight(truncate(b.String(), 76), "-")
}

// operationProps maps one OpenAPI operation to the properties of an APIM operation.
func operationProps(op *openapi3.Operation, common openapi3.Parameters, method, path, name, schemaID string) OperationProperties {
	display := op.Summary
	if display == "" {
		display = op.OperationID
	}
	if display == "" {
		display = name
	}
	req := importedRequest{QueryParameters: []importedParam{}, Headers: []importedParam{}, Representations: []importedRepresentation{}}
	template := []importedParam{}
	for _, p := range mergedParameters(common, op.Parameters) {
		ip := paramOf(p)
		switch p.In {
		case openapi3.ParameterInPath:
			ip.Required = true
			template = append(template, ip)
		case openapi3.ParameterInQuery:
			req.QueryParameters = append(req.QueryParameters, ip)
		case openapi3.ParameterInHeader:
			req.Headers = append(req.Headers, ip)
		}
	}
	// APIM drops the body of GET, HEAD and OPTIONS (reference/apim-surface.md §9).
	if body := op.RequestBody; body != nil && body.Value != nil && !slices.Contains([]string{"GET", "HEAD", "OPTIONS"}, method) {
		req.Description = body.Value.Description
		req.Representations = representationsOf(body.Value.Content, schemaID)
	}
	p := OperationProperties{DisplayName: truncate(display, 300), Method: method, URLTemplate: path,
		Description: op.Description, TemplateParameters: mustJSON(template), Request: mustJSON(req),
		Responses: mustJSON(responsesOf(op.Responses, schemaID))}
	return p
}

// mergedParameters are a path's parameters overridden by an operation's of the same name and
// location, in order.
func mergedParameters(common, own openapi3.Parameters) []*openapi3.Parameter {
	var out []*openapi3.Parameter
	for _, list := range []openapi3.Parameters{common, own} {
		for _, ref := range list {
			if ref == nil || ref.Value == nil {
				continue
			}
			p := ref.Value
			if i := slices.IndexFunc(out, func(o *openapi3.Parameter) bool { return o.Name == p.Name && o.In == p.In }); i >= 0 {
				out[i] = p
			} else {
				out = append(out, p)
			}
		}
	}
	return out
}

// paramOf maps an OpenAPI parameter to APIM's ParameterContract.
func paramOf(p *openapi3.Parameter) importedParam {
	ip := importedParam{Name: p.Name, Type: "string", Description: p.Description, Required: p.Required, Values: []string{}}
	if p.Schema == nil || p.Schema.Value == nil {
		return ip
	}
	s := p.Schema.Value
	if s.Type != nil && len(s.Type.Slice()) > 0 {
		ip.Type = s.Type.Slice()[0]
	}
	if s.Default != nil {
		ip.DefaultValue = fmt.Sprint(s.Default)
	}
	for _, v := range s.Enum {
		ip.Values = append(ip.Values, fmt.Sprint(v))
	}
	return ip
}

// representationsOf lists content's media types, sorted, each naming its component schema
// when it refers to one.
func representationsOf(content openapi3.Content, schemaID string) []importedRepresentation {
	out := []importedRepresentation{}
	types := make([]string, 0, len(content))
	for t := range content {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		r := importedRepresentation{ContentType: t}
		if mt := content[t]; mt != nil && mt.Schema != nil && schemaID != "" {
			if name, ok := strings.CutPrefix(mt.Schema.Ref, "#/components/schemas/"); ok {
				r.SchemaID, r.TypeName = schemaID, name
			}
		}
		out = append(out, r)
	}
	return out
}

// responsesOf lists the responses with a numeric status code, in order; "default" and ranges
// ("2XX") have no place in APIM's ResponseContract.
func responsesOf(responses *openapi3.Responses, schemaID string) []importedResponse {
	out := []importedResponse{}
	if responses == nil {
		return out
	}
	for code, ref := range responses.Map() {
		n, err := strconv.Atoi(code)
		if err != nil || ref == nil || ref.Value == nil {
			continue
		}
		r := importedResponse{StatusCode: n, Headers: []importedParam{}, Representations: representationsOf(ref.Value.Content, schemaID)}
		if ref.Value.Description != nil {
			r.Description = *ref.Value.Description
		}
		for name, h := range ref.Value.Headers {
			if h != nil && h.Value != nil {
				hp := paramOf(&h.Value.Parameter)
				hp.Name = name
				r.Headers = append(r.Headers, hp)
			}
		}
		slices.SortFunc(r.Headers, func(a, b importedParam) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b importedResponse) int { return a.StatusCode - b.StatusCode })
	return out
}
