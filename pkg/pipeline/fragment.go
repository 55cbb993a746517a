package pipeline

import (
	"errors"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/policy"
)

// Fragment is a policy fragment as Compile includes it: its parsed policies, or why they could
// not be parsed (a node older than management meeting a newer element), which fails every
// pipeline that includes it.
type Fragment struct {
	Doc *policy.Fragment
	Err error
}

// FragmentNotFound is the error for an include-fragment naming no fragment, in APIM's words
// (capitalized and punctuated, since clients see it as APIM writes it).
func FragmentNotFound(id string) error {
	return fmt.Errorf("Policy fragment with id '%s' could not be found.", id)
}

// includeFragment compiles <include-fragment>: the fragment's policies, in place and in order,
// as if the including document held them (docs/policies.md "Policy fragments"). They are
// compiled with the including scope, so named values, counters and errors are the including
// document's; an error inside the fragment names the include-fragment element, with the
// fragment's own element, line and column in its message.
func (b *builder) includeFragment(in *info, p *policy.IncludeFragment) (step, error) {
	f, ok := b.env.Fragments[strings.ToLower(p.FragmentID)]
	if !ok {
		return nil, FragmentNotFound(p.FragmentID)
	}
	if f.Err != nil {
		return nil, fmt.Errorf("the policy fragment '%s' does not parse: %w", p.FragmentID, f.Err)
	}
	// The fragment's policies substitute their own named values; the including choose's
	// secret, if any, still guards the policies after this one.
	secret := b.secret
	defer func() { b.secret = secret }()
	var steps []step
	for i, fp := range f.Doc.Policies {
		s, err := b.policy(fp, fmt.Sprintf("%s/fragment[%d]", in.path, i+1), true)
		if err != nil {
			var ce *CompileError
			if errors.As(err, &ce) {
				return nil, fmt.Errorf("in the policy fragment '%s', element '%s' on line %d, column %d: %w", p.FragmentID, ce.Policy, ce.Pos.Line, ce.Pos.Column, ce.Err)
			}
			return nil, err
		}
		if s != nil {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return nil, nil
	}
	return sequenceStep(steps), nil
}

// sequenceStep runs the steps of an included fragment in order; the first response wins.
type sequenceStep []step

func (s sequenceStep) run(c *runCtx) *Response { return runSteps(c, s) }
