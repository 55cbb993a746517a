package pipeline

import (
	"errors"
	"fmt"

	"gatehouse.dev/pkg/policy"
)

// compiler compiles one policy, decoded by pkg/policy as its element's type, into its step. A
// nil step with a nil error is a policy that changes the pipeline rather than running per
// request (websocket-limits). Each supported policy is a small unit in its own file: a compile
// method on builder, listed in compilers, and a step whose run method is its per-request check.
type compiler func(b *builder, in *info, p policy.Policy) (step, error)

// compilers maps the element names of the policies the gateway runs to their compilers.
// Adding a policy is its decoder in pkg/policy, its unit here, and one line below. An element
// without a compiler is refused at compile time. init fills the table because it refers,
// through choose, back to itself.
var compilers map[string]compiler

func init() {
	compilers = map[string]compiler{
		"validate-jwt":        compilerOf((*builder).validateJWT),
		"check-header":        compilerOf((*builder).checkHeader),
		"ip-filter":           compilerOf((*builder).ipFilter),
		"rate-limit":          compilerOf((*builder).rateLimit),
		"rate-limit-by-key":   compilerOf((*builder).rateLimitByKey),
		"quota":               compilerOf((*builder).quota),
		"quota-by-key":        compilerOf((*builder).quotaByKey),
		"set-header":          compilerOf((*builder).setHeader),
		"set-query-parameter": compilerOf((*builder).setQueryParameter),
		"set-backend-service": compilerOf((*builder).setBackendService),
		"return-response":     compilerOf((*builder).returnResponse),
		"choose":              compilerOf((*builder).choose),
		"set-variable":        compilerOf((*builder).setVariable),
		"websocket-limits":    compilerOf((*builder).websocketLimits),
		"limit-connections":   compilerOf((*builder).limitConnections),
		"base":                compilerOf((*builder).base),
		"include-fragment":    compilerOf((*builder).includeFragment),
	}
}

// compilerOf adapts a compile method taking its policy's own type.
func compilerOf[P policy.Policy](compile func(*builder, *info, P) (step, error)) compiler {
	return func(b *builder, in *info, p policy.Policy) (step, error) {
		tp, ok := p.(P)
		if !ok {
			return nil, fmt.Errorf("the policy decoded as %T; the gateway compiles it as %T", p, tp)
		}
		return compile(b, in, tp)
	}
}

// base refuses <base/> where it is not expanded: Compile inlines the parent scope at a
// <base/> directly in a section, so one reaching here is nested.
func (b *builder) base(*info, *policy.Base) (step, error) {
	return nil, errors.New("the base element is only allowed directly in a section")
}
