package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"

	"gatehouse.dev/pkg/egress"
)

// importFormat is one value of an API write's properties.format that Gatehouse reads
// (reference/apim-surface.md §9; docs/import-export.md).
type importFormat struct {
	// swagger2 marks a Swagger 2.0 document, converted to OpenAPI 3 when read.
	swagger2 bool
	// json requires the document to be JSON (an OpenAPI 3 document may be YAML or JSON).
	json bool
	// inline is, for a link format, the format of the document the link leads to; "" for an
	// inline format.
	inline string
}

// importFormats are the import formats Gatehouse implements; APIM's others (wsdl, wadl,
// graphql, odata, grpc) are refused naming the format.
var importFormats = map[string]importFormat{
	"openapi":           {},
	"openapi+json":      {json: true},
	"openapi-link":      {inline: "openapi"},
	"openapi+json-link": {inline: "openapi+json"},
	"swagger-json":      {swagger2: true, json: true},
	"swagger-link-json": {inline: "swagger-json"},
	// swagger-link is what APIM's own specification example sends for swagger-link-json.
	"swagger-link": {inline: "swagger-json"},
}

// Limits of a link import: the fetch, redirects included, must finish within
// importFetchTimeout, follow at most importMaxRedirects redirects and read at most
// importMaxBytes.
const (
	importFetchTimeout = 30 * time.Second
	importMaxRedirects = 5
	importMaxBytes     = 16 << 20
)

// apiImport are the write-only properties of an API PUT that import a description
// (APIM's ApiCreateOrUpdateProperties). They are never stored.
type apiImport struct {
	Format string `json:"format"`
	Value  string `json:"value"`
	// WSDLSelector belongs to WSDL imports, which Gatehouse refuses.
	WSDLSelector *struct {
		WSDLServiceName  string `json:"wsdlServiceName"`
		WSDLEndpointName string `json:"wsdlEndpointName"`
	} `json:"wsdlSelector"`
	// TranslateRequiredQueryParameters may be "query" (required query parameters stay query
	// parameters), the only translation Gatehouse does.
	TranslateRequiredQueryParameters string `json:"translateRequiredQueryParameters"`
}

// formatOf returns the import format named f, or a ValidationError naming it.
func formatOf(f string) (importFormat, error) {
	imf, ok := importFormats[strings.ToLower(f)]
	if !ok {
		return importFormat{}, invalid("properties.format",
			"Gatehouse imports OpenAPI 3 and Swagger 2 descriptions (openapi, openapi+json, openapi-link, openapi+json-link, swagger-json, swagger-link-json); the format '%s' is not supported (docs/import-export.md)", f)
	}
	return imf, nil
}

// fetchImportLink replaces, in the properties in of an API PUT, the link of a link import
// with the document it leads to, fetched under the egress policy, and the link format with
// the inline one. Other properties pass unchanged. It runs before the write's transaction, so
// that no transaction waits on the network.
func (c *Catalog) fetchImportLink(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
	var imp apiImport
	if err := decodePart(in, &imp); err != nil || imp.Format == "" {
		return in, err
	}
	imf, err := formatOf(imp.Format)
	if err != nil || imf.inline == "" {
		return in, err
	}
	doc, err := c.fetchDocument(ctx, imp.Value)
	if err != nil {
		return nil, err
	}
	if _, err := readDescription(ctx, importFormats[imf.inline], imf.inline, string(doc)); err != nil {
		// The reader's error quotes the document, which may be an internal endpoint's answer
		// the caller must not read: the cause is logged, the caller gets the link.
		link, _ := url.Parse(imp.Value)
		c.log.InfoContext(ctx, "import link document refused", "url", loggableLink(link), "err", err)
		return nil, invalid("properties.value", "the document at %s is not a readable description in the format %s", link.Redacted(), imp.Format)
	}
	var props map[string]json.RawMessage
	if err := json.Unmarshal(in, &props); err != nil {
		return nil, invalid("properties", "properties must be a JSON object")
	}
	for k := range props {
		if strings.EqualFold(k, "format") || strings.EqualFold(k, "value") {
			delete(props, k)
		}
	}
	props["format"], props["value"] = mustJSON(imf.inline), mustJSON(string(doc))
	return mustJSON(props), nil
}

// fetchDocument GETs the description at link. The link and every redirect must pass the
// egress policy before any name is resolved, and each address dialled after resolution
// (pkg/egress.Dialer), never one of management's own listeners (RefuseOwn); the answer must be 200 within importFetchTimeout and at most
// importMaxBytes. Errors name the link, never management's internals: the cause is logged.
func (c *Catalog) fetchDocument(ctx context.Context, link string) ([]byte, error) {
	u, err := url.Parse(link)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
		return nil, invalid("properties.value", "value must be the absolute http:// or https:// URL of the description to import")
	}
	if err := c.checkURLEgress("value", link); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, importFetchTimeout)
	defer cancel()
	client := &http.Client{
		Transport: &http.Transport{DialContext: egress.NewDialer(c.egress, c.own...).DialContext, ForceAttemptHTTP2: true},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > importMaxRedirects {
				return fmt.Errorf("more than %d redirects", importMaxRedirects)
			}
			return c.egress.CheckURL(req.URL)
		},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, invalid("properties.value", "value is not a URL Gatehouse can fetch")
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrDenied) {
			var de *egress.DeniedError
			errors.As(err, &de)
			return nil, invalid("properties.value", "the description at %s is not reachable under the operator's egress policy: %s", u.Redacted(), de)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its URL may carry a token in its query
		}
		c.log.InfoContext(ctx, "import link fetch failed", "url", loggableLink(u), "err", err)
		return nil, invalid("properties.value", "the description at %s could not be fetched (no answer within %s, or the connection failed)", u.Redacted(), importFetchTimeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, invalid("properties.value", "fetching the description at %s answered %d, not 200", u.Redacted(), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, importMaxBytes+1))
	if err != nil {
		c.log.InfoContext(ctx, "import link read failed", "url", loggableLink(u), "err", err)
		return nil, invalid("properties.value", "the description at %s could not be read to its end", u.Redacted())
	}
	if len(body) > importMaxBytes {
		return nil, invalid("properties.value", "the description at %s is larger than %d MiB", u.Redacted(), importMaxBytes>>20)
	}
	return body, nil
}

// loggableLink is what management's log keeps of an import link: no query or fragment, which
// may carry a token (a blob's SAS, a Gatehouse export link's).
func loggableLink(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// parseImport reads the description an API write imports, or returns nil when it imports
// none. Link formats must have been fetched (fetchImportLink): a PATCH cannot import.
func parseImport(ctx context.Context, in json.RawMessage) (*openapi3.T, error) {
	var imp apiImport
	if err := decodePart(in, &imp); err != nil {
		return nil, err
	}
	switch {
	case imp.WSDLSelector != nil:
		return nil, invalid("properties.wsdlSelector", "Gatehouse does not import WSDL, so wsdlSelector has no use; remove it")
	case imp.TranslateRequiredQueryParameters != "" && !strings.EqualFold(imp.TranslateRequiredQueryParameters, "query"):
		return nil, invalid("properties.translateRequiredQueryParameters",
			"Gatehouse keeps required query parameters as query parameters ('query'); '%s' is not supported", imp.TranslateRequiredQueryParameters)
	case imp.Format == "" && imp.Value != "":
		return nil, invalid("properties.format", "value is imported only with format (openapi, openapi+json, swagger-json or their -link forms)")
	case imp.Format == "":
		return nil, nil
	}
	imf, err := formatOf(imp.Format)
	if err != nil {
		return nil, err
	}
	if imf.inline != "" {
		return nil, invalid("properties.format", "a description is imported from a link only by PUT, not PATCH")
	}
	if strings.TrimSpace(imp.Value) == "" {
		return nil, invalid("properties.value", "value is required with format: the description to import")
	}
	return readDescription(ctx, imf, imp.Format, imp.Value)
}

// readDescription reads value, a description in the inline format imf named format. Its
// errors quote the document.
func readDescription(ctx context.Context, imf importFormat, format, value string) (*openapi3.T, error) {
	if imf.json && !json.Valid([]byte(value)) {
		return nil, invalid("properties.value", "the format %s needs a JSON document, and value is not valid JSON", format)
	}
	if imf.swagger2 {
		return readSwagger2(value)
	}
	return readOpenAPI3(ctx, value)
}

// readOpenAPI3 parses an OpenAPI 3.0 or 3.1 document, YAML or JSON, resolving its internal
// references; an external $ref is refused, as in APIM.
func readOpenAPI3(ctx context.Context, value string) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData([]byte(value))
	if err != nil {
		return nil, invalid("properties.value", "the OpenAPI document could not be read: %s", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, invalid("properties.value", "the document is not OpenAPI 3 (its openapi field is '%s'); send Swagger 2.0 as swagger-json", doc.OpenAPI)
	}
	return doc, nil
}

// readSwagger2 parses a Swagger 2.0 JSON document and converts it to OpenAPI 3, its host,
// basePath and schemes becoming servers.
func readSwagger2(value string) (*openapi3.T, error) {
	var doc2 openapi2.T
	if err := json.Unmarshal([]byte(value), &doc2); err != nil {
		return nil, invalid("properties.value", "the Swagger document could not be read: %s", err)
	}
	if doc2.Swagger != "2.0" {
		return nil, invalid("properties.value", "the document is not Swagger 2.0 (its swagger field is '%s'); send OpenAPI 3 as openapi or openapi+json", doc2.Swagger)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, invalid("properties.value", "the Swagger document could not be converted to OpenAPI 3: %s", err)
	}
	return doc, nil
}

// withImported fills, in the properties in of an API write, what the imported description doc
// gives and the write leaves out: displayName from info.title, description from
// info.description, serviceUrl from the servers (the first https one, else the first). It
// drops the import properties, which are not stored.
func withImported(in json.RawMessage, doc *openapi3.T) (json.RawMessage, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(in, &props); err != nil {
		return nil, invalid("properties", "properties must be a JSON object")
	}
	has := func(name string) bool {
		for k, v := range props {
			if strings.EqualFold(k, name) && string(v) != "null" && string(v) != `""` {
				return true
			}
		}
		return false
	}
	for k := range props {
		if slices.Contains([]string{"format", "value", "translaterequiredqueryparameters"}, strings.ToLower(k)) {
			delete(props, k)
		}
	}
	if doc.Info != nil && !has("displayName") {
		props["displayName"] = mustJSON(truncate(doc.Info.Title, 300))
	}
	if doc.Info != nil && !has("description") && doc.Info.Description != "" {
		props["description"] = mustJSON(doc.Info.Description)
	}
	if !has("serviceUrl") {
		if s := serverURL(doc.Servers); s != "" {
			props["serviceUrl"] = mustJSON(s)
		}
	}
	for _, k := range []string{"type", "apiType"} {
		var t string
		if v, ok := props[k]; ok && json.Unmarshal(v, &t) == nil && strings.EqualFold(t, APITypeWebSocket) {
			return nil, invalid("properties."+k, "an imported description defines the operations of an http API; a websocket API has only onHandshake (export it with format=asyncapi+json)")
		}
	}
	return mustJSON(props), nil
}

// serverURL picks an absolute server URL, its variables at their defaults: the first https
// one, else the first http one, else "".
func serverURL(servers openapi3.Servers) string {
	var found []string
	for _, s := range servers {
		raw := s.URL
		for name, v := range s.Variables {
			raw = strings.ReplaceAll(raw, "{"+name+"}", v.Default)
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		found = append(found, strings.TrimSuffix(raw, "/"))
	}
	if i := slices.IndexFunc(found, func(s string) bool { return strings.HasPrefix(s, "https:") }); i >= 0 {
		return found[i]
	}
	if len(found) > 0 {
		return found[0]
	}
	return ""
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// prepareImportedAPI validates a write of an API's current revision that may import a
// description: the description fills what the write leaves out (withImported), the API is
// prepared as any other, and then its operations become the description's.
func (w *write) prepareImportedAPI(ctx context.Context, r *Resource, in json.RawMessage, old *Resource) error {
	doc, err := parseImport(ctx, in)
	if err != nil {
		return err
	}
	if doc == nil {
		return w.prepareAPI(ctx, r, in, old)
	}
	if in, err = withImported(in, doc); err != nil {
		return err
	}
	if err := w.prepareAPI(ctx, r, in, old); err != nil {
		return err
	}
	return w.importOperations(ctx, r.Name, doc)
}

// refuseRevisionImport refuses an import into a revision that is not current: import into
// the API, or create the revision from it with sourceApiId.
func refuseRevisionImport(in json.RawMessage) error {
	var imp apiImport
	if err := decodePart(in, &imp); err != nil {
		return err
	}
	if imp.Format != "" || imp.Value != "" {
		return invalid("properties.format", "Gatehouse imports a description into an API's current revision only; import into the API, then create the revision from it with sourceApiId")
	}
	return nil
}
