// Package pipeline compiles APIM policy documents (pkg/policy) into the checks and changes a
// gateway runs on each WebSocket handshake or REST request, and the limits of the WebSocket
// session that follows (SessionLimits), composing global → product → API → operation scopes
// through <base/>. Parsing and compilation happen once per configuration; Run does only the
// per-request work. Policy expressions are the C# subset described in EXPRESSIONS.md,
// compiled and evaluated by package expr, which reads the request through expr.Context.
package pipeline

import (
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// Request is one request as policies see and change it. The gateway fills it before Run and
// uses Header, Query and Backend afterwards to build the backend request.
type Request struct {
	// HTTP is the client's request as received. Policies read it; they never change it.
	HTTP *http.Request
	// ClientIP is the caller's address (the TCP peer; X-Forwarded-For is not trusted).
	ClientIP netip.Addr
	// Header and Query are what will be sent to the backend: the client's, minus hop-by-hop
	// headers and the subscription key. set-header and set-query-parameter change them.
	Header http.Header
	Query  url.Values
	// Backend is the backend base URL; set-backend-service replaces it. It is nil after
	// backend-id named a pool, whose member the gateway chooses.
	Backend *url.URL
	// BackendID is the lower-cased name of the backend entity set-backend-service backend-id
	// chose, or "" (the API's serviceUrl or a base-url). The gateway applies the entity's
	// credentials, TLS checks, circuit breaker and pool.
	BackendID string
	// Variables is context.Variables.
	Variables map[string]any

	API          APIInfo
	Operation    OperationInfo
	Product      *ProductInfo      // nil without product context
	Subscription *SubscriptionInfo // nil when no key was needed or given
	User         *UserInfo         // the subscription's owner, if any
	Deployment   DeploymentInfo
	RequestID    string
	Now          time.Time

	// TokenExpiry is the earliest expiry of the JWTs validate-jwt accepted (zero if none),
	// so a session can end when its token does.
	TokenExpiry time.Time

	// Session holds the WebSocket session's limits from websocket-limits; Run sets it. Zero
	// fields were set by no policy: the gateway uses its defaults (SessionLimits.Resolve).
	Session SessionLimits

	// ResponseHeader holds headers for the client's response when Run returns nil, such as
	// rate-limit's remaining-calls-header-name. Run allocates it when a policy sets one.
	ResponseHeader http.Header

	// Connections are the fleet-wide concurrent-connection limits <limit-connections>
	// policies put on this session; the gateway acquires each before dialing the backend.
	Connections []ConnectionLimit
}

// ConnectionLimit is one <limit-connections> applied to a session: at most Max sessions
// open at once across the fleet under Counter. EvictOldest closes the counter's oldest
// session to make room instead of refusing the new one.
type ConnectionLimit struct {
	Counter     string
	Max         int64
	EvictOldest bool
}

// APIInfo is context.Api.
type APIInfo struct {
	ID, Name, Path, ServiceURL string
}

// OperationInfo is context.Operation.
type OperationInfo struct {
	ID, Name, Method, URLTemplate string
}

// ProductInfo is context.Product.
type ProductInfo struct {
	ID, Name string
}

// SubscriptionInfo is context.Subscription. Key is the key the caller presented.
type SubscriptionInfo struct {
	ID, Name, Key string
	// StartDate is when the subscription became active; quota periods count from it (the
	// zero time counts from 0001-01-01T00:00:00Z).
	StartDate time.Time
}

// UserInfo is context.User.
type UserInfo struct {
	ID string
}

// DeploymentInfo is context.Deployment.
type DeploymentInfo struct {
	GatewayID, Region, ServiceName string
}

// Response ends the pipeline: a policy's rejection or a return-response. The gateway writes
// Body when it is non-nil (return-response; an empty non-nil Body means no body), else the
// APIM error body {"statusCode":Status,"message":Message} as application/json. Header holds
// headers to add (Retry-After, ...); it may be nil.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Message string
	// Source and Reason are context.LastError's, e.g. "validate-jwt" / "TokenExpired";
	// they go to logs and metrics, never to the client beyond Message.
	Source, Reason string
}
