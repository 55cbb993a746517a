package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// ExportLinkPath serves the documents of export links, without ARM authentication: the signed
// token in the link is the credential, as the SAS of APIM's blob links (docs/import-export.md).
const ExportLinkPath = "/apiExports"

// exportResult is APIM's ApiExportResult: the API's id, the result's format, and the document
// (inline formats: a JSON document as an object, a YAML one as a string) or {"link": …}.
type exportResult struct {
	ID     string `json:"id"`
	Format string `json:"format"`
	Value  any    `json:"value"`
}

// exportAPI answers GET apis/{id}?export=true&format=… for the API r.
func (s *Server) exportAPI(c echo.Context, r catalog.Resource) error {
	if !c.QueryParams().Has("export") {
		return apierror.Validation("format", "The query parameter 'format' is taken on an API only with export=true (docs/import-export.md).")
	}
	if v := c.QueryParam("export"); !strings.EqualFold(v, "true") {
		return apierror.Validation("export", "export must be true, with format naming the description to export")
	}
	f, err := catalog.ExportFormatOf(c.QueryParam("format"))
	if err != nil {
		return err
	}
	out := exportResult{ID: catalog.ServiceID(ref(c)) + "/" + r.Path(), Format: f.Result}
	ctx := c.Request().Context()
	if f.Link {
		token, err := s.cat.ExportLinkToken(ctx, ref(c), r.Name, f.Inline)
		if err != nil {
			return err
		}
		q := url.Values{"token": {token}, "format": {f.Inline}}
		out.Value = map[string]string{"link": c.Scheme() + "://" + c.Request().Host + ExportLinkPath + "?" + q.Encode()}
		return c.JSON(http.StatusOK, out)
	}
	svc, err := s.cat.GetService(ctx, ref(c))
	if err != nil {
		return err
	}
	doc, err := s.cat.ExportAPI(ctx, ref(c), r.Name, f, s.gatewayURLs(svc.ID))
	if err != nil {
		return err
	}
	if f.YAML {
		out.Value = string(doc)
	} else {
		out.Value = json.RawMessage(doc)
	}
	return c.JSON(http.StatusOK, out)
}

// serveExportLink serves the document of an export link (exportAPI): JSON or YAML as the
// link's format says. A bad or expired token is 404, whatever was wrong with it.
func (s *Server) serveExportLink(c echo.Context) error {
	ctx := c.Request().Context()
	f, err := catalog.ExportFormatOf(c.QueryParam("format"))
	if err != nil || f.Link {
		return apierror.New(apierror.ResourceNotFound, "The export link is not valid or has expired.")
	}
	svcRef, name, err := s.cat.OpenExportLink(ctx, c.QueryParam("token"), c.QueryParam("format"))
	if errors.Is(err, catalog.ErrInvalidExportLink) {
		return apierror.New(apierror.ResourceNotFound, "The export link is not valid or has expired.")
	}
	if err != nil {
		return err
	}
	svc, err := s.cat.GetService(ctx, svcRef)
	if err != nil {
		return err
	}
	doc, err := s.cat.ExportAPI(ctx, svcRef, name, f, s.gatewayURLs(svc.ID))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	if f.YAML {
		return c.Blob(http.StatusOK, "application/yaml", doc)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
}

// gatewayURLs are the base URLs the live nodes of the service serviceID advertise, sorted and
// without duplicates: the servers of an exported description.
func (s *Server) gatewayURLs(serviceID string) []string {
	var out []string
	for _, n := range s.consoleNodesOf(serviceID) {
		out = append(out, strings.TrimSuffix(n.URL, "/"))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
