package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/pkg/apierror"
)

// jsonBody admits the body of a PUT, PATCH or POST only as UTF-8 JSON, as ARM does: a body
// whose Content-Type is not JSON is refused with 415 UnsupportedMediaType, and one that is not
// valid UTF-8 with 400, rather than decoded with U+FFFD in place of the bad bytes (which
// encoding/json would do silently, storing something the caller never sent). JSON is
// application/json or any application/*+json type, with no charset or charset=utf-8; the
// Azure SDKs for Go, JavaScript and Python send "application/json". A request without a body
// (the actions, PUT of a link) needs no Content-Type. It reads the whole body, which the body
// limit bounds, and hands it on to the handler.
func jsonBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodPut, http.MethodPatch, http.MethodPost:
		default:
			return next(c)
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			var he *echo.HTTPError
			if errors.As(err, &he) {
				return he
			}
			return &bodyError{code: apierror.InvalidRequestContent, target: "body", msg: "The request body could not be read."}
		}
		r.Body = io.NopCloser(bytes.NewReader(raw))
		if len(raw) == 0 {
			return next(c)
		}
		if !isJSONType(r.Header.Get(echo.HeaderContentType)) {
			return &apierror.Error{Code: apierror.UnsupportedMediaType, Target: "Content-Type",
				Message: "The request body must be JSON: send it with Content-Type: application/json."}
		}
		if !utf8.Valid(raw) {
			return &bodyError{code: apierror.InvalidRequestContent, target: "body",
				msg: "The request body is not valid UTF-8; JSON text must be encoded in UTF-8 (RFC 8259 §8.1)."}
		}
		return next(c)
	}
}

// isJSONType reports whether the Content-Type value v is a JSON media type in UTF-8.
func isJSONType(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// childBodyFields are the top-level members of a child resource's body: its properties, and
// the read-only id, name, type and systemData that a client may send back as it read them
// (ARM ignores read-only values on writes).
var childBodyFields = []string{"properties", "id", "name", "type", "systemData"}

// onlyFields refuses, naming it, a top-level member of body not in allowed: a member Gatehouse
// would not keep is refused rather than dropped (docs/arm.md).
func onlyFields(body map[string]json.RawMessage, allowed []string) error {
	for _, name := range slices.Sorted(maps.Keys(body)) {
		if !slices.Contains(allowed, name) {
			return &apierror.Error{Code: apierror.ValidationError, Target: name,
				Message: "Gatehouse does not implement the member '" + name + "' of this request body; remove it (docs/arm.md)."}
		}
	}
	return nil
}
