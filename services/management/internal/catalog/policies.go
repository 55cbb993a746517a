package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/policy"
)

// PolicyProperties are the stored properties of a policy: the document as written and its format.
type PolicyProperties struct {
	Value  string `json:"value"`
	Format string `json:"format"`
}

// PolicyName is the only policy id APIM allows.
const PolicyName = "policy"

var policyBehaviour = behaviour{
	parentKind: func(parent string) (*Kind, string, error) {
		parts := strings.Split(parent, "/")
		switch {
		case parent == "":
			return nil, "", nil
		case len(parts) == 2 && parts[0] == "apis":
			return KindAPI, parts[1], nil
		case len(parts) == 2 && parts[0] == "products":
			return KindProduct, parts[1], nil
		case len(parts) == 4 && parts[0] == "apis" && parts[2] == "operations":
			return KindOperation, parts[3], nil
		}
		return nil, "", notFound("Policy")
	},
	writable: func(ctx context.Context, w *write, parent, name string) error {
		if !strings.EqualFold(name, PolicyName) {
			return invalid("policyId", "the policy id must be 'policy'")
		}
		if parts := strings.Split(parent, "/"); len(parts) == 2 && parts[0] == "apis" {
			api, err := apiOf(ctx, w.tx, parent)
			if err != nil {
				return err
			}
			if api.Type == APITypeWebSocket {
				return invalid("policy", "Not allowed at 'Api' scope for 'WEBSOCKET' api type")
			}
		}
		return nil
	},
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p PolicyProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		doc, format, err := ParsePolicy(p.Value, p.Format)
		if err != nil {
			return err
		}
		env, err := w.policyEnv(ctx)
		if err != nil {
			return err
		}
		if err := checkFragments(doc, env); err != nil {
			return err
		}
		if err := w.checkPolicyScope(ctx, r.Parent, doc, env); err != nil {
			return err
		}
		if err := w.checkNamedValues(ctx, doc.NamedValues()); err != nil {
			return err
		}
		if err := compilePolicy(doc, r.Parent, env); err != nil {
			return err
		}
		r.Name = PolicyName
		r.Properties = mustJSON(PolicyProperties{Value: p.Value, Format: string(format)})
		return nil
	},
}

// ParsePolicy parses and validates a policy document written in format ("" = xml), returning
// APIM's ValidationError with target "representation" and the line for a bad document.
func ParsePolicy(value, format string) (*policy.Document, policy.Format, error) {
	return parseWritten(value, format, "the policy document", policy.Parse)
}

// parseWritten parses value, written in format, with parse; what names the value in the
// error for an empty one.
func parseWritten[T any](value, format, what string, parse func(string, policy.Format) (T, error)) (T, policy.Format, error) {
	var zero T
	f, err := writtenFormat(format)
	if err != nil {
		return zero, "", err
	}
	if strings.TrimSpace(value) == "" {
		return zero, "", invalid("properties.value", "value is required: %s", what)
	}
	v, err := parse(value, f)
	if err != nil {
		return zero, "", invalid("representation", "%s", err.Error())
	}
	return v, f, nil
}

// writtenFormat reads the format property of a policy or fragment written: "" is xml; the
// "-link" formats are refused, since Gatehouse fetches nothing from URLs.
func writtenFormat(format string) (policy.Format, error) {
	f := policy.Format(strings.ToLower(format))
	switch f {
	case "":
		return policy.FormatXML, nil
	case policy.FormatXML, policy.FormatRawXML:
		return f, nil
	case "xml-link", "rawxml-link":
		return "", invalid("properties.format", "format '%s' is not supported: Gatehouse does not fetch policies from URLs; send the document inline as xml or rawxml", format)
	}
	return "", invalid("properties.format", "format must be xml or rawxml")
}

// readFormat reads the format query parameter of a GET: "" is xml.
func readFormat(format string) (policy.Format, error) {
	want := policy.Format(strings.ToLower(format))
	switch want {
	case "":
		return policy.FormatXML, nil
	case policy.FormatXML, policy.FormatRawXML:
		return want, nil
	}
	return "", invalid("format", "format must be xml or rawxml")
}

// checkPolicyScope refuses, at a WebSocket API's operation scope, policies that cannot run on a
// handshake, in the document or in a fragment it includes. Inherited from product or global
// scope they are skipped at run time instead, as APIM does.
func (w *write) checkPolicyScope(ctx context.Context, parent string, doc *policy.Document, env pipeline.Env) error {
	parts := strings.Split(parent, "/")
	if len(parts) != 4 {
		return nil
	}
	api, err := apiOf(ctx, w.tx, strings.Join(parts[:2], "/"))
	if err != nil {
		return err
	}
	if api.Type != APITypeWebSocket {
		return nil
	}
	if un := doc.Unsupported(); len(un) > 0 {
		return invalid("representation", "Policy '%s' (line %d) is not supported on a WebSocket API's onHandshake operation.", un[0].Name, un[0].Pos.Line)
	}
	for _, ref := range doc.Fragments() {
		if f := env.Fragments[strings.ToLower(ref.ID)]; f.Doc != nil && len(f.Doc.Unsupported()) > 0 {
			un := f.Doc.Unsupported()[0]
			return invalid("representation", "Policy '%s' (line %d of the policy fragment '%s', included on line %d) is not supported on a WebSocket API's onHandshake operation.",
				un.Name, un.Pos.Line, ref.ID, ref.Pos.Line)
		}
	}
	return nil
}

// checkNamedValues makes sure every {{name}} a policy references exists (by name or display name).
func (w *write) checkNamedValues(ctx context.Context, refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	known, err := w.namedValueNames(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for _, ref := range refs {
		if !known[strings.ToLower(ref)] {
			missing = append(missing, ref)
		}
	}
	if len(missing) > 0 {
		return invalid("representation", "Cannot find a property '%s'. Create the named value first.", strings.Join(missing, "', '"))
	}
	return nil
}

// namedValueNames returns the lower-cased names and display names of the service's named values.
func (w *write) namedValueNames(ctx context.Context) (map[string]bool, error) {
	nvs, _, err := w.tx.List(ctx, Query{Kind: KindNamedValue, All: true})
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, 2*len(nvs))
	for _, nv := range nvs {
		var p NamedValueProperties
		_ = json.Unmarshal(nv.Properties, &p)
		known[strings.ToLower(nv.Name)] = true
		known[strings.ToLower(p.DisplayName)] = true
	}
	return known, nil
}

// RenderPolicy returns a stored policy's document in format ("" = xml).
func RenderPolicy(r Resource, format string) (PolicyProperties, error) {
	var p PolicyProperties
	if err := json.Unmarshal(r.Properties, &p); err != nil {
		return p, err
	}
	want, err := readFormat(format)
	if err != nil {
		return p, err
	}
	if string(want) == p.Format {
		return p, nil
	}
	doc, err := policy.Parse(p.Value, policy.Format(p.Format))
	if err != nil {
		return p, fmt.Errorf("stored policy %s does not parse: %w", r.Path(), err)
	}
	return PolicyProperties{Value: doc.Render(want), Format: string(want)}, nil
}
