package policy

// DecodeFunc decodes one policy element into its typed form, validating it. It reports problems
// with e.Errorf so that errors carry the element's position. r decodes nested policies.
type DecodeFunc func(r *Registry, e *Element) (Policy, error)

// Registry maps policy element names to the functions that decode them; it is the extension
// point for Gatehouse's own policies. Register every element before the first Parse: after
// that a Registry is safe for concurrent use by Parse and Decode.
type Registry struct {
	decoders map[string]DecodeFunc
}

// NewRegistry returns a registry that knows every policy element listed in this package: the
// typed policies Gatehouse runs, its own extensions (IsGatehouseExtension) and the APIM
// policies it recognises but does not run, which decode to *Unsupported.
func NewRegistry() *Registry {
	r := &Registry{decoders: map[string]DecodeFunc{
		"base":                decodeBase,
		"validate-jwt":        decodeValidateJWT,
		"check-header":        decodeCheckHeader,
		"ip-filter":           decodeIPFilter,
		"rate-limit":          decodeRateLimit,
		"rate-limit-by-key":   decodeRateLimitByKey,
		"quota":               decodeQuota,
		"quota-by-key":        decodeQuotaByKey,
		"set-header":          decodeSetHeader,
		"set-query-parameter": decodeSetQueryParameter,
		"set-backend-service": decodeSetBackendService,
		"return-response":     decodeReturnResponse,
		"choose":              decodeChoose,
		"set-variable":        decodeSetVariable,
		"websocket-limits":    decodeWebSocketLimits,
		"limit-connections":   decodeLimitConnections,
		"include-fragment":    decodeIncludeFragment,
	}}
	for _, name := range unsupportedNames {
		r.decoders[name] = decodeUnsupported
	}
	return r
}

// Register makes name decode with fn, replacing any previous decoder for name.
func (r *Registry) Register(name string, fn DecodeFunc) {
	r.decoders[name] = fn
}

// Decode decodes one policy element with the decoder registered for its name. An unknown name
// is an error at the element's position.
func (r *Registry) Decode(e *Element) (Policy, error) {
	fn, ok := r.decoders[e.Name]
	if !ok {
		return nil, e.Errorf("Unknown policy.")
	}
	return fn(r, e)
}

// decodeNested decodes the policies nested in a choose branch. <base/> and
// <websocket-limits> are only meaningful directly in a section, so they are refused here.
func (r *Registry) decodeNested(parent *Element) ([]Policy, error) {
	if err := parent.noText(); err != nil {
		return nil, err
	}
	var ps []Policy
	for _, e := range parent.Elements() {
		if e.Name == "base" {
			return nil, e.Errorf("The base element is only allowed directly in a section.")
		}
		if e.Name == "websocket-limits" {
			return nil, e.Errorf("The websocket-limits element is only allowed directly in the inbound section.")
		}
		p, err := r.Decode(e)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// unsupportedNames are APIM policies that Gatehouse recognises but does not run on a
// WebSocket handshake (reference/apim.md §1.4, §3.1 and APIM's policy reference). They decode to
// *Unsupported and keep their content verbatim so that Render gives them back.
var unsupportedNames = []string{
	"authentication-basic",
	"authentication-certificate",
	"authentication-managed-identity",
	"azure-openai-emit-token-metric",
	"azure-openai-semantic-cache-lookup",
	"azure-openai-semantic-cache-store",
	"azure-openai-token-limit",
	"cache-lookup",
	"cache-lookup-value",
	"cache-remove-value",
	"cache-store",
	"cache-store-value",
	"cors",
	"cross-domain",
	"emit-metric",
	"find-and-replace",
	"forward-request",
	"get-authorization-context",
	"invoke-dapr-binding",
	"json-to-xml",
	"jsonp",
	"limit-concurrency",
	"llm-content-safety",
	"llm-emit-token-metric",
	"llm-semantic-cache-lookup",
	"llm-semantic-cache-store",
	"llm-token-limit",
	"log-to-eventhub",
	"mock-response",
	"proxy",
	"publish-to-dapr",
	"redirect-content-urls",
	"retry",
	"rewrite-uri",
	"send-one-way-request",
	"send-request",
	"send-service-bus-message",
	"set-body",
	"set-method",
	"set-status",
	"trace",
	"validate-azure-ad-token",
	"validate-client-certificate",
	"validate-content",
	"validate-graphql-request",
	"validate-headers",
	"validate-odata-request",
	"validate-parameters",
	"validate-status-code",
	"wait",
	"xml-to-json",
	"xsl-transform",
}
