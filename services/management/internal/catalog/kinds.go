package catalog

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"gatehouse.dev/pkg/configwire"
)

// Kind describes one resource collection of the ARM API.
type Kind struct {
	// Name is the stored kind (configwire.Kind*).
	Name string
	// Segment is the collection's URL segment ("apis" for both apis and product apis).
	Segment string
	// Type is the ARM resource type.
	Type string
	// What names one resource in messages ("Api").
	What string
	// MaxLen and Pattern constrain resource names (reference/apim.md §2.2).
	MaxLen  int
	Pattern *regexp.Regexp
	// Filter lists the fields $filter may use.
	Filter map[string]FilterField
	// Link kinds join two resources; their name is the id of the linked resource, of kind
	// Target.
	Link   bool
	Target *Kind
}

// FilterField is a $filter field: Prop is the JSON property it reads ("" for the resource name);
// Type is "string" or "bool"; EqOnly restricts it to eq/ne.
type FilterField struct {
	Prop   string
	Type   string
	EqOnly bool
}

var (
	idPattern      = regexp.MustCompile(`^[^*#&+:<>?]+$`)
	servicePattern = regexp.MustCompile(`^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$`)
	// displayNamePattern is what APIM allows in a named value's display name.
	displayNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

func stringFields(props ...string) map[string]FilterField {
	m := map[string]FilterField{"name": {Type: "string"}}
	for _, p := range props {
		m[p] = FilterField{Prop: p, Type: "string"}
	}
	return m
}

// The kinds.
var (
	KindAPI = &Kind{Name: configwire.KindAPI, Segment: "apis", Type: "Microsoft.ApiManagement/service/apis", What: "Api",
		MaxLen: 256, Pattern: idPattern,
		Filter: withField(stringFields("displayName", "description", "serviceUrl", "path", "type"), "isCurrent", FilterField{Prop: "isCurrent", Type: "bool", EqOnly: true})}
	KindOperation = &Kind{Name: configwire.KindOperation, Segment: "operations", Type: "Microsoft.ApiManagement/service/apis/operations", What: "Operation",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("displayName", "method", "description", "urlTemplate")}
	KindPolicy = &Kind{Name: configwire.KindPolicy, Segment: "policies", Type: "Microsoft.ApiManagement/service/policies", What: "Policy",
		MaxLen: 6, Pattern: regexp.MustCompile(`^(?i:policy)$`), Filter: stringFields()}
	KindProduct = &Kind{Name: configwire.KindProduct, Segment: "products", Type: "Microsoft.ApiManagement/service/products", What: "Product",
		MaxLen: 256, Pattern: idPattern,
		Filter: withField(stringFields("displayName", "description", "terms"), "state", FilterField{Prop: "state", Type: "string", EqOnly: true})}
	KindProductAPI = &Kind{Name: configwire.KindProductAPI, Segment: "apis", Type: "Microsoft.ApiManagement/service/products/apis", What: "Api",
		MaxLen: 256, Pattern: idPattern, Link: true, Target: KindAPI, Filter: stringFields()}
	KindUser = &Kind{Name: configwire.KindUser, Segment: "users", Type: "Microsoft.ApiManagement/service/users", What: "User",
		MaxLen: 80, Pattern: idPattern,
		Filter: withField(stringFields("firstName", "lastName", "email", "note"), "state", FilterField{Prop: "state", Type: "string", EqOnly: true})}
	KindSubscription = &Kind{Name: configwire.KindSubscription, Segment: "subscriptions", Type: "Microsoft.ApiManagement/service/subscriptions", What: "Subscription",
		MaxLen: 256, Pattern: idPattern,
		Filter: withField(stringFields("displayName", "stateComment", "ownerId", "scope"), "state", FilterField{Prop: "state", Type: "string", EqOnly: true})}
	KindGateway = &Kind{Name: configwire.KindGateway, Segment: "gateways", Type: "Microsoft.ApiManagement/service/gateways", What: "Gateway",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("description")}
	KindGatewayAPI = &Kind{Name: configwire.KindGatewayAPI, Segment: "apis", Type: "Microsoft.ApiManagement/service/gateways/apis", What: "Api",
		MaxLen: 256, Pattern: idPattern, Link: true, Target: KindAPI, Filter: stringFields()}
	KindNamedValue = &Kind{Name: configwire.KindNamedValue, Segment: "namedValues", Type: "Microsoft.ApiManagement/service/namedValues", What: "NamedValue",
		MaxLen: 256, Pattern: idPattern, Filter: stringFields("displayName")}
	KindCertificate = &Kind{Name: configwire.KindCertificate, Segment: "certificates", Type: "Microsoft.ApiManagement/service/certificates", What: "Certificate",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("subject", "thumbprint", "expirationDate")}
	KindGatewayHostname = &Kind{Name: configwire.KindGatewayHostname, Segment: "hostnameConfigurations", Type: "Microsoft.ApiManagement/service/gateways/hostnameConfigurations",
		What: "GatewayHostnameConfiguration", MaxLen: 80, Pattern: idPattern, Filter: stringFields("hostname")}
	KindGatewayCA = &Kind{Name: configwire.KindGatewayCA, Segment: "certificateAuthorities", Type: "Microsoft.ApiManagement/service/gateways/certificateAuthorities",
		What: "GatewayCertificateAuthority", MaxLen: 80, Pattern: idPattern, Filter: map[string]FilterField{"name": {Type: "string", EqOnly: true}}}
	KindBackend = &Kind{Name: configwire.KindBackend, Segment: "backends", Type: "Microsoft.ApiManagement/service/backends", What: "Backend",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("title", "url")}
	KindPolicyFragment = &Kind{Name: configwire.KindPolicyFragment, Segment: "policyFragments", Type: "Microsoft.ApiManagement/service/policyFragments", What: "PolicyFragment",
		MaxLen: 80, Pattern: regexp.MustCompile(`(^[\w]+$)|(^[\w][\w\-]+[\w]$)`), Filter: stringFields("description", "value")}
	KindAPIVersionSet = &Kind{Name: configwire.KindAPIVersionSet, Segment: "apiVersionSets", Type: "Microsoft.ApiManagement/service/api-version-sets", What: "ApiVersionSet",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("displayName", "description", "versioningScheme")}
	KindAPISchema = &Kind{Name: configwire.KindAPISchema, Segment: "schemas", Type: "Microsoft.ApiManagement/service/apis/schemas", What: "ApiSchema",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("contentType")}
	KindAPIRelease = &Kind{Name: configwire.KindAPIRelease, Segment: "releases", Type: "Microsoft.ApiManagement/service/apis/releases", What: "ApiRelease",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("notes")}
	KindLogger = &Kind{Name: configwire.KindLogger, Segment: "loggers", Type: "Microsoft.ApiManagement/service/loggers", What: "Logger",
		MaxLen: 256, Pattern: idPattern,
		Filter: withField(stringFields("description", "resourceId"), "loggerType", FilterField{Prop: "loggerType", Type: "string", EqOnly: true})}
	KindDiagnostic = &Kind{Name: configwire.KindDiagnostic, Segment: "diagnostics", Type: "Microsoft.ApiManagement/service/diagnostics", What: "Diagnostic",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields()}
	KindPortalSetting = &Kind{Name: configwire.KindPortalSetting, Segment: "portalsettings", Type: "Microsoft.ApiManagement/service/portalsettings", What: "PortalSetting",
		MaxLen: 10, Pattern: regexp.MustCompile(`^(?i:signin|signup|delegation)$`), Filter: stringFields()}
	KindIdentityProvider = &Kind{Name: configwire.KindIdentityProvider, Segment: "identityProviders", Type: "Microsoft.ApiManagement/service/identityProviders", What: "IdentityProvider",
		MaxLen: 9, Pattern: regexp.MustCompile(`^(?i:aad|aadB2C|facebook|google|microsoft|twitter)$`), Filter: stringFields()}
)

func withField(m map[string]FilterField, name string, f FilterField) map[string]FilterField {
	m[name] = f
	return m
}

// kinds indexes every kind by stored name.
var kinds = map[string]*Kind{}

func init() {
	for _, k := range []*Kind{KindAPI, KindOperation, KindPolicy, KindProduct, KindProductAPI, KindUser,
		KindSubscription, KindGateway, KindGatewayAPI, KindNamedValue,
		KindCertificate, KindGatewayHostname, KindGatewayCA, KindBackend, KindPolicyFragment,
		KindAPIVersionSet, KindAPIRelease, KindLogger, KindDiagnostic, KindPortalSetting, KindIdentityProvider,
		KindTag, KindAPITag, KindOperationTag, KindProductTag, KindTagDescription, KindGroup, KindGroupUser, KindProductGroup, KindAPISchema} {
		kinds[k.Name] = k
	}
}

// KindByName returns the kind stored under name, or nil.
func KindByName(name string) *Kind { return kinds[name] }

// ValidName checks a resource name against its kind's constraints: its length and pattern
// (APIM's, reference/apim.md §2.2), and ARM's rules for every name, which APIM's patterns leave
// out: no control, format or line-separator character (a tab, a newline, a bidirectional
// override), no space at either end, no backslash, and neither "." nor "..", which a path
// would resolve (they arrive percent-encoded, %2E%2E, past path cleaning).
func (k *Kind) ValidName(name string) error {
	if name == "" || len(name) > k.MaxLen || !k.Pattern.MatchString(name) {
		return invalid("name", "'%s' is not a valid %s name: it must be 1 to %d characters and match %s", name, k.What, k.MaxLen, k.Pattern)
	}
	if why := armNameProblem(name); why != "" {
		return invalid("name", "%q is not a valid %s name: %s", name, k.What, why)
	}
	return nil
}

// armNameProblem says why name breaks ARM's rules for every resource name, or "".
func armNameProblem(name string) string {
	if !utf8.ValidString(name) {
		return "it is not valid UTF-8"
	}
	if name == "." || name == ".." {
		return "'.' and '..' are not names"
	}
	if strings.ContainsRune(name, '\\') {
		return "it must not contain a backslash"
	}
	for _, r := range name {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return fmt.Sprintf("it must not contain the control or format character %U", r)
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return "it must not begin or end with a space"
	}
	return ""
}

// ValidServiceName checks an API Management service name.
func ValidServiceName(name string) error {
	if len(name) < 1 || len(name) > 50 || !servicePattern.MatchString(name) {
		return invalid("serviceName", "'%s' is not a valid service name: 1 to 50 letters, digits and dashes, starting with a letter", name)
	}
	return nil
}
