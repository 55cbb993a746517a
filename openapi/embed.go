// Package openapi holds the management API contract, embedded so management can serve it and its
// tests can check routes against it.
package openapi

import _ "embed"

// Management is the OpenAPI 3 document of the management service (management.yaml).
//
//go:embed management.yaml
var Management []byte
