package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/policy"
)

// A policy fragment (reference/apim-surface.md §8) is stored as written, with its format, and
// checked like a policy: it parses (pkg/policy ParseFragment), its named values exist, and its
// policies compile on their own with the nodes' compiler. Documents include it with
// <include-fragment>, which the compiler expands in place (pkg/pipeline), so a fragment change
// compiles every policy including it again and is refused, naming the policy, when one would
// break; a fragment in use cannot be deleted. Fragments reach nodes as entities
// (configwire.KindPolicyFragment); nodes recompile every API when one changes.

// PolicyFragmentProperties are the ARM properties of a policy fragment.
type PolicyFragmentProperties struct {
	Value             string `json:"value"`
	Format            string `json:"format"`
	Description       string `json:"description,omitempty"`
	ProvisioningState string `json:"provisioningState,omitempty"`
}

// maxFragmentDescription is APIM's limit on a fragment's description.
const maxFragmentDescription = 1000

var policyFragmentBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p PolicyFragmentProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if len(p.Description) > maxFragmentDescription {
			return invalid("properties.description", "description must be at most %d characters", maxFragmentDescription)
		}
		frag, format, err := ParseFragment(p.Value, p.Format)
		if err != nil {
			return err
		}
		if err := w.checkNamedValues(ctx, frag.NamedValues()); err != nil {
			return err
		}
		env, err := w.policyEnv(ctx)
		if err != nil {
			return err
		}
		doc := &policy.Document{Inbound: &policy.Section{Policies: frag.Policies}}
		if err := compileIn(doc, "fragment:"+r.Name, env); err != nil {
			return err
		}
		env.Fragments[strings.ToLower(r.Name)] = pipeline.Fragment{Doc: frag}
		what := fmt.Sprintf("The policy fragment '%s'", r.Name)
		if err := w.recheckScopes(ctx, env, r.Name, what); err != nil {
			return err
		}
		if err := w.recheckPolicies(ctx, env, includes(r.Name), what); err != nil {
			return err
		}
		r.Properties = mustJSON(PolicyFragmentProperties{Value: p.Value, Format: string(format), Description: p.Description, ProvisioningState: "Succeeded"})
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		users, err := fragmentUsers(ctx, w.tx, r.Name)
		if err != nil || len(users) == 0 {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "The Policy Fragment '%s' is used by the following entities:\r\n", r.Name)
		for _, u := range users {
			b.WriteString("/" + u.Path() + "\r\n")
		}
		return invalid("policyFragment", "%s", b.String())
	},
}

// ParseFragment parses and validates a policy fragment written in format ("" = xml),
// returning APIM's ValidationError with target "representation" and the line for a bad one.
func ParseFragment(value, format string) (*policy.Fragment, policy.Format, error) {
	return parseWritten(value, format, "the policy fragment, <fragment> holding one or more policies", policy.ParseFragment)
}

// fragmentOf parses a stored fragment.
func fragmentOf(r Resource) (*policy.Fragment, error) {
	var p PolicyFragmentProperties
	if err := json.Unmarshal(r.Properties, &p); err != nil {
		return nil, err
	}
	return policy.ParseFragment(p.Value, policy.Format(p.Format))
}

// fragments returns the service's fragments for a compile environment, by lower-cased name.
func (w *write) fragments(ctx context.Context) (map[string]pipeline.Fragment, error) {
	rs, _, err := w.tx.List(ctx, Query{Kind: KindPolicyFragment, All: true})
	if err != nil {
		return nil, err
	}
	out := make(map[string]pipeline.Fragment, len(rs))
	for _, r := range rs {
		f, err := fragmentOf(r)
		out[strings.ToLower(r.Name)] = pipeline.Fragment{Doc: f, Err: err}
	}
	return out, nil
}

// includes selects the documents that include the fragment name.
func includes(name string) func(*policy.Document, pipeline.Env) bool {
	return func(doc *policy.Document, _ pipeline.Env) bool {
		for _, ref := range doc.Fragments() {
			if strings.EqualFold(ref.ID, name) {
				return true
			}
		}
		return false
	}
}

// fragmentUsers returns the stored policies that include the fragment name, in the order the
// store lists them.
func fragmentUsers(ctx context.Context, r Reader, name string) ([]Resource, error) {
	policies, _, err := r.List(ctx, Query{Kind: KindPolicy, AnyParent: true, All: true})
	if err != nil {
		return nil, err
	}
	uses := includes(name)
	var out []Resource
	for _, pol := range policies {
		if doc, _, err := ParsePolicy(policyValue(pol)); err == nil && uses(doc, pipeline.Env{}) {
			out = append(out, pol)
		}
	}
	return out, nil
}

// checkFragments makes sure every fragment a policy includes, in any section, exists, with
// APIM's words and the element's position.
func checkFragments(doc *policy.Document, env pipeline.Env) error {
	for _, ref := range doc.Fragments() {
		if _, ok := env.Fragments[strings.ToLower(ref.ID)]; !ok {
			return invalid("include-fragment", "Error in element 'include-fragment' on line %d, column %d: %s", ref.Pos.Line, ref.Pos.Column, pipeline.FragmentNotFound(ref.ID))
		}
	}
	return nil
}

// FragmentReferences returns a page of the policies that include the fragment name and their
// total count.
func (c *Catalog) FragmentReferences(ctx context.Context, ref ServiceRef, name string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	r := readerFor(c.store, svc.ID)
	if _, err := r.Get(ctx, KindPolicyFragment, "", name); err != nil {
		return nil, 0, err
	}
	users, err := fragmentUsers(ctx, r, name)
	if err != nil {
		return nil, 0, err
	}
	total := len(users)
	users = users[min(page.Skip, total):]
	if page.Top > 0 && page.Top < len(users) {
		users = users[:page.Top]
	}
	return users, total, nil
}

// RenderFragment returns a stored fragment's properties with its value in format ("" = xml):
// in xml the policies without the <fragment> root, as APIM returns them; in rawxml with it.
// A value stored in the format asked for is returned as written (its root added or removed).
func RenderFragment(r Resource, format string) (PolicyFragmentProperties, error) {
	var p PolicyFragmentProperties
	if err := json.Unmarshal(r.Properties, &p); err != nil {
		return p, err
	}
	want, err := readFormat(format)
	if err != nil {
		return p, err
	}
	frag, err := policy.ParseFragment(p.Value, policy.Format(p.Format))
	if err != nil {
		return p, fmt.Errorf("stored policy fragment %s does not parse: %w", r.Path(), err)
	}
	stored := p.Format
	p.Format = string(want)
	if string(want) == stored {
		switch {
		case want == policy.FormatRawXML && policy.HasFragmentRoot(p.Value):
			return p, nil
		case want == policy.FormatXML && !policy.HasFragmentRoot(p.Value):
			return p, nil // written as the content alone
		case want == policy.FormatXML:
			if content, ok := policy.FragmentContent(p.Value); ok {
				p.Value = content
				return p, nil
			}
		}
	}
	if want == policy.FormatXML {
		p.Value = frag.RenderContent(want)
	} else {
		p.Value = frag.Render(want)
	}
	return p, nil
}

// namedValueInFragments refuses to delete the named value name (display name display) while a
// policy fragment references it.
func (w *write) namedValueInFragments(ctx context.Context, name, display string) error {
	rs, _, err := w.tx.List(ctx, Query{Kind: KindPolicyFragment, All: true})
	if err != nil {
		return err
	}
	for _, r := range rs {
		f, err := fragmentOf(r)
		if err != nil {
			continue
		}
		for _, ref := range f.NamedValues() {
			if strings.EqualFold(ref, name) || strings.EqualFold(ref, display) {
				return &ConflictError{Message: fmt.Sprintf("Named value '%s' is referenced by the policy fragment '%s'; remove the reference first.", display, r.Name)}
			}
		}
	}
	return nil
}

// recheckScopes refuses a change of the fragment name that would put, through env, a policy a
// handshake cannot run into a WebSocket API's onHandshake policy including it.
func (w *write) recheckScopes(ctx context.Context, env pipeline.Env, name, what string) error {
	users, err := fragmentUsers(ctx, w.tx, name)
	if err != nil {
		return err
	}
	for _, pol := range users {
		doc, _, err := ParsePolicy(policyValue(pol))
		if err != nil {
			continue // listed by fragmentUsers only when it parses
		}
		if err := w.checkPolicyScope(ctx, pol.Parent, doc, env); err != nil {
			return brokenPolicy(err, what, pol.Parent)
		}
	}
	return nil
}
