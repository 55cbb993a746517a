// Package expr compiles and evaluates APIM policy expressions, the C# subset described in
// ../EXPRESSIONS.md: an expression is lexed, parsed and type-checked once (Compile, or
// CompileText, CompileNumber, CompileFlag and CompileCondition for policy attributes) and
// evaluated per request against a Context by walking the tree, without reflection.
package expr

import (
	"net/http"
	"net/url"
	"time"
)

// Context is APIM's context object as an expression reads it: the request being processed.
// The evaluator calls it only where an expression reads context, never per tree node.
// Header, Query and Variables are read at each evaluation, so an expression sees what earlier
// policies changed. Evaluation never modifies what Context returns.
type Context interface {
	// Field returns a string member of context. ok is false when the object holding it is
	// absent (a request without subscription, user or product): reading it is a null
	// reference, and null after ?.
	Field(f Field) (s string, ok bool)
	// Timestamp is context.Timestamp.
	Timestamp() time.Time
	// HTTP is the client's request as received, for context.Request.Method and Url. Nil
	// reads as an empty method and URL.
	HTTP() *http.Request
	// Header is context.Request.Headers: the headers that will go to the backend.
	Header() http.Header
	// Query is context.Request.Url.Query: the query parameters that will go to the backend.
	Query() url.Values
	// Variables is context.Variables; nil reads as empty.
	Variables() map[string]any
}

// Field names a string member of context that Context.Field returns.
type Field uint8

// The members of context that Context.Field returns, named by their path below context.
const (
	RequestID Field = iota
	RequestIPAddress
	SubscriptionID
	SubscriptionName
	SubscriptionKey
	UserID
	ProductID
	ProductName
	APIID
	APIName
	APIPath
	APIServiceURL
	OperationID
	OperationName
	OperationMethod
	OperationURLTemplate
	DeploymentGatewayID
	DeploymentRegion
	DeploymentServiceName

	// The members below are computed by the evaluator from the other methods of Context.
	fTimestamp
	fMethod
	fURLPath
	fURLHost
	fURLScheme
	fURLPort
	fResponseStatus
)
