package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/policy"
)

// A policy is checked at write time with the compiler every gateway node runs
// (pipeline.Check), so that management never stores a document a node of the same version
// cannot enforce (issue 11). A write that changes what a stored policy refers to (a named
// value's value or display name) compiles those policies again and is refused, naming the
// policy, when one would no longer compile; deleting a named value a policy uses is refused
// the same way (namedValueBehaviour.beforeDelete). A node that still cannot compile a policy
// (an older node during a rolling upgrade) fails that API closed; see docs/policies.md.

// policyEnv is the compile environment of the service's policies: its named values by
// lower-cased name and display name, the secret ones' values, which errors never quote, and
// its policy fragments. Its backends give backend-id their URLs, as on nodes. Its FetchCheck is
// the egress policy, which every URL a policy fetches (validate-jwt's openid-config) must pass
// as a serviceUrl does.
func (w *write) policyEnv(ctx context.Context) (pipeline.Env, error) {
	nvs, _, err := w.tx.List(ctx, Query{Kind: KindNamedValue, All: true})
	if err != nil {
		return pipeline.Env{}, err
	}
	backends, err := w.backendEnv(ctx)
	if err != nil {
		return pipeline.Env{}, err
	}
	env := pipeline.Env{NamedValues: make(map[string]string, 2*len(nvs)), Backends: backends,
		FetchCheck: w.c.checkFetchEgress}
	if env.Fragments, err = w.fragments(ctx); err != nil {
		return pipeline.Env{}, err
	}
	for _, nv := range nvs {
		name, display, value, secret := namedValueOf(nv)
		env.NamedValues[strings.ToLower(name)] = value
		env.NamedValues[strings.ToLower(display)] = value
		if secret {
			env.Secrets = append(env.Secrets, value)
		}
	}
	return env, nil
}

// namedValueOf returns a stored named value's name, display name, value and whether it is secret.
func namedValueOf(r Resource) (name, display, value string, secret bool) {
	var p NamedValueProperties
	_ = json.Unmarshal(r.Properties, &p)
	value = r.Secrets[secretValue]
	if p.Value != nil {
		value = *p.Value
	}
	return r.Name, p.DisplayName, value, p.Secret
}

// policyScope names the scope of a policy whose parent path is parent, as nodes name it in
// their failures: "global", "product:{id}", "api:{id}" or "operation:{api}/{id}".
func policyScope(parent string) string {
	parts := strings.Split(parent, "/")
	switch {
	case parent == "":
		return "global"
	case len(parts) == 2 && parts[0] == "products":
		return "product:" + parts[1]
	case len(parts) == 2:
		return "api:" + parts[1]
	case len(parts) == 4:
		return "operation:" + parts[1] + "/" + parts[3]
	}
	return parent
}

// compilePolicy compiles doc as a node would and returns APIM's ValidationError, naming the
// element, line and column, for anything a node could not compile.
func compilePolicy(doc *policy.Document, parent string, env pipeline.Env) error {
	return compileIn(doc, policyScope(parent), env)
}

// compileIn is compilePolicy for a document compiled as scope (a policy's, or
// "fragment:{id}" for a fragment's policies alone).
func compileIn(doc *policy.Document, scope string, env pipeline.Env) error {
	err := pipeline.Check(doc, scope, env)
	if err == nil {
		return nil
	}
	var ce *pipeline.CompileError
	if errors.As(err, &ce) {
		return invalid("representation", "Error in element '%s' on line %d, column %d: %s", ce.Policy, ce.Pos.Line, ce.Pos.Column, ce.Err)
	}
	return invalid("representation", "%s", err.Error())
}

// recheckPolicies compiles again, with env, every stored policy that uses selects (by env: a
// named value it or a fragment it includes references, a fragment it includes), and refuses
// the write that would break one, naming it.
func (w *write) recheckPolicies(ctx context.Context, env pipeline.Env, uses func(*policy.Document, pipeline.Env) bool, what string) error {
	policies, _, err := w.tx.List(ctx, Query{Kind: KindPolicy, AnyParent: true, All: true})
	if err != nil {
		return err
	}
	for _, pol := range policies {
		doc, _, err := ParsePolicy(policyValue(pol))
		if err != nil {
			continue // stored before write-time checks and never valid: nodes fail it closed already
		}
		if !uses(doc, env) {
			continue
		}
		if err := compilePolicy(doc, pol.Parent, env); err != nil {
			return brokenPolicy(err, what, pol.Parent)
		}
	}
	return nil
}

// brokenPolicy is the refusal of a write (what) that would make the policy of parent fail
// with err.
func brokenPolicy(err error, what, parent string) error {
	var ve *ValidationError
	msg := err.Error()
	if errors.As(err, &ve) {
		msg = ve.Message
	}
	return invalid("properties", "%s would break the policy of '%s': %s", what, policyOwner(parent), msg)
}

// policyOwner names the scope of a policy for messages: "the service" or its parent path.
func policyOwner(parent string) string {
	if parent == "" {
		return "the service"
	}
	return parent
}

// checkNamedValueChange compiles the policies that use the named value being written (under
// its old or new name or display name) with its new value, before the write is stored.
func (w *write) checkNamedValueChange(ctx context.Context, name, display, value string, secret bool, old *Resource) error {
	env, err := w.policyEnv(ctx)
	if err != nil {
		return err
	}
	names := map[string]bool{strings.ToLower(name): true, strings.ToLower(display): true}
	if old != nil {
		_, oldDisplay, _, _ := namedValueOf(*old)
		names[strings.ToLower(oldDisplay)] = true
		delete(env.NamedValues, strings.ToLower(oldDisplay))
	}
	env.NamedValues[strings.ToLower(name)] = value
	env.NamedValues[strings.ToLower(display)] = value
	if secret {
		env.Secrets = append(env.Secrets, value)
	}
	return w.recheckPolicies(ctx, env, referencesAny(names), fmt.Sprintf("The named value '%s'", display))
}

// referencesAny selects the documents that reference one of names (lower-cased names or
// display names of named values), themselves or in a fragment they include.
func referencesAny(names map[string]bool) func(*policy.Document, pipeline.Env) bool {
	return func(doc *policy.Document, env pipeline.Env) bool {
		for _, ref := range documentNamedValues(doc, env) {
			if names[strings.ToLower(ref)] {
				return true
			}
		}
		return false
	}
}

// documentNamedValues returns the named values doc references, itself and in the fragments
// of env it includes.
func documentNamedValues(doc *policy.Document, env pipeline.Env) []string {
	refs := doc.NamedValues()
	for _, f := range doc.Fragments() {
		if frag := env.Fragments[strings.ToLower(f.ID)]; frag.Doc != nil {
			refs = append(refs, frag.Doc.NamedValues()...)
		}
	}
	return refs
}
