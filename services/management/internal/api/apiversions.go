package api

import (
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/pkg/apierror"
)

// APIVersions are the api-version values management accepts: every published version of
// Microsoft.ApiManagement, GA and preview, oldest first (reference/apim-surface.md §1). They all
// name the same surface: Gatehouse serves one shape of each resource, and a field an older
// version does not know is one its clients never send. Any other value is refused with
// InvalidApiVersionParameter (docs/arm.md).
var APIVersions = []string{
	"2016-07-07", "2016-10-10", "2017-03-01", "2018-01-01", "2018-06-01-preview",
	"2019-01-01", "2019-12-01-preview", "2019-12-01", "2020-06-01-preview", "2020-12-01",
	"2021-01-01-preview", "2021-04-01-preview", "2021-08-01", "2021-12-01-preview",
	"2022-04-01-preview", "2022-08-01", "2022-09-01-preview", "2023-03-01-preview",
	"2023-05-01-preview", "2023-09-01-preview", "2024-05-01", "2024-06-01-preview",
	"2024-10-01-preview", "2025-03-01-preview", "2025-09-01-preview", "2026-03-01-preview",
	"2026-09-01-preview",
}

// requireAPIVersion refuses a request without an api-version or with one not in APIVersions.
func (s *Server) requireAPIVersion(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		v := c.QueryParam("api-version")
		if v == "" {
			return &apierror.Error{Code: apierror.MissingAPIVersion, Target: "api-version",
				Message: "The api-version query parameter (?api-version=) is required for all requests."}
		}
		if !slices.Contains(APIVersions, v) {
			return &apierror.Error{Code: apierror.InvalidAPIVersion, Target: "api-version",
				Message: "The api-version '" + v + "' is invalid. The supported versions are '" + strings.Join(APIVersions, ",") + "'."}
		}
		return next(c)
	}
}
