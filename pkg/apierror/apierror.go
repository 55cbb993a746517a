// Package apierror is Gatehouse's one error catalog: the ARM error codes management answers with
// and the APIM gateway error bodies the gateway answers with. Every error a client sees is built
// here, so codes, statuses and messages stay consistent across handlers.
package apierror

import (
	"fmt"
	"net/http"
)

// Code is an ARM error code, the value of error.code in the envelope and of x-ms-error-code.
type Code string

// The catalog. Each code has one HTTP status (see Status).
const (
	ValidationError             Code = "ValidationError"
	InvalidRequestContent       Code = "InvalidRequestContent"
	InvalidAPIVersion           Code = "InvalidApiVersionParameter"
	MissingAPIVersion           Code = "MissingApiVersionParameter"
	InvalidFilter               Code = "InvalidFilterParameter"
	RequestTooLarge             Code = "RequestEntityTooLarge"
	AuthenticationFailed        Code = "AuthenticationFailed"
	AuthorizationFailed         Code = "AuthorizationFailed"
	ResourceNotFound            Code = "ResourceNotFound"
	PreconditionFailed          Code = "PreconditionFailed"
	PreconditionRequired        Code = "PreconditionRequired"
	Conflict                    Code = "Conflict"
	MethodNotAllowed            Code = "MethodNotAllowed"
	UnsupportedMediaType        Code = "UnsupportedMediaType"
	InternalError               Code = "InternalServerError"
	ServiceUnavailable          Code = "ServiceUnavailable"
	InvalidGatewayToken         Code = "InvalidGatewayToken"
	ResourceGroupNotFoundOrGone Code = "ResourceGroupNotFound"
)

var statuses = map[Code]int{
	ValidationError:             http.StatusBadRequest,
	InvalidRequestContent:       http.StatusBadRequest,
	InvalidAPIVersion:           http.StatusBadRequest,
	MissingAPIVersion:           http.StatusBadRequest,
	InvalidFilter:               http.StatusBadRequest,
	RequestTooLarge:             http.StatusRequestEntityTooLarge,
	AuthenticationFailed:        http.StatusUnauthorized,
	InvalidGatewayToken:         http.StatusUnauthorized,
	AuthorizationFailed:         http.StatusForbidden,
	ResourceNotFound:            http.StatusNotFound,
	ResourceGroupNotFoundOrGone: http.StatusNotFound,
	MethodNotAllowed:            http.StatusMethodNotAllowed,
	Conflict:                    http.StatusConflict,
	PreconditionFailed:          http.StatusPreconditionFailed,
	PreconditionRequired:        http.StatusPreconditionRequired,
	UnsupportedMediaType:        http.StatusUnsupportedMediaType,
	InternalError:               http.StatusInternalServerError,
	ServiceUnavailable:          http.StatusServiceUnavailable,
}

// Status is the HTTP status that goes with code; unknown codes are 500.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an ARM error: {"error":{"code","message","target","details"}}. Its message is safe to
// show to the caller; causes belong in the log, never here.
type Error struct {
	Code    Code     `json:"code"`
	Message string   `json:"message"`
	Target  string   `json:"target,omitempty"`
	Details []*Error `json:"details,omitempty"`
}

// Envelope is the ARM error response body.
type Envelope struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%s: %s (target %s)", e.Code, e.Message, e.Target)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Status is the HTTP status of e.
func (e *Error) Status() int { return e.Code.Status() }

// New returns an error with code and a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Validation returns APIM's field validation error: a top-level ValidationError whose details
// name the offending field, as APIM answers ("One or more fields contain incorrect values:").
func Validation(target, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{
		Code:    ValidationError,
		Message: "One or more fields contain incorrect values:",
		Target:  target,
		Details: []*Error{{Code: ValidationError, Target: target, Message: msg}},
	}
}

// NotFound returns ARM's 404 for a resource kind, as APIM words it ("Api not found.").
func NotFound(what string) *Error {
	return &Error{Code: ResourceNotFound, Message: what + " not found."}
}

// GatewayBody is the body of every error the gateway generates, as APIM's gateway answers:
// {"statusCode":401,"message":"..."}.
type GatewayBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// Gateway messages, worded as APIM's gateway words them (reference/apim.md §1.6, §3.6).
const (
	MsgNotFound           = "Resource not found"
	MsgInvalidUpgrade     = "Invalid websocket upgrade request"
	MsgMissingKey         = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
	MsgInvalidKey         = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
	MsgForbidden          = "Forbidden"
	MsgNoConfiguration    = "Gateway has no configuration yet"
	MsgBackendUnavailable = "Backend service unavailable"
	MsgHeaderTooLarge     = "Request header fields too large"
)
