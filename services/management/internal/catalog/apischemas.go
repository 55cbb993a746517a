package catalog

import (
	"context"
	"encoding/json"
	"strings"
)

// APISchemaProperties are the stored properties of an API schema (APIM's apis/{id}/schemas):
// a document of contentType, such as the components an OpenAPI import brings
// (ComponentsContentType).
type APISchemaProperties struct {
	ContentType string            `json:"contentType"`
	Document    APISchemaDocument `json:"document"`
}

// APISchemaDocument holds a schema in one of APIM's three forms: value, a document as text
// (XSD, JSON schema); definitions, Swagger 2 definitions; components, OpenAPI 3 components.
type APISchemaDocument struct {
	Value       string          `json:"value,omitempty"`
	Definitions json.RawMessage `json:"definitions,omitempty"`
	Components  json.RawMessage `json:"components,omitempty"`
}

// maxSchemaContentType bounds a schema's content type.
const maxSchemaContentType = 256

var apiSchemaBehaviour = behaviour{
	parentKind: parentOf(KindAPI),
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p APISchemaProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		p.ContentType = strings.TrimSpace(p.ContentType)
		if p.ContentType == "" || len(p.ContentType) > maxSchemaContentType {
			return invalid("properties.contentType", "contentType is required, at most %d characters: e.g. %s", maxSchemaContentType, ComponentsContentType)
		}
		d := p.Document
		if d.Value == "" && isNull(d.Definitions) && isNull(d.Components) {
			return invalid("properties.document", "document needs one of value, definitions or components")
		}
		for field, raw := range map[string]json.RawMessage{"definitions": d.Definitions, "components": d.Components} {
			if !isNull(raw) && raw[0] != '{' {
				return invalid("properties.document."+field, "%s must be an object", field)
			}
		}
		r.Properties = mustJSON(p)
		return nil
	},
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }
