// Package portal serves the web portal under /portal/: static HTML, CSS and ES modules embedded
// in the binary (no build step, no Node at run time). The pages talk to management's ARM API and
// to /gatehouse/portal/v1 with the bearer token the person signed in with, which they keep in
// sessionStorage only; nothing here authenticates, since the files hold no data.
package portal

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Path is where the portal is served; /portal redirects here.
const Path = "/portal/"

//go:embed static
var static embed.FS

// Files are the portal's static files, rooted at the portal's path.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return sub
}

// Register adds GET and HEAD /portal/* (the files) and /portal (a redirect to /portal/) to e.
func Register(e *echo.Echo) {
	files := http.StripPrefix(Path, http.FileServerFS(Files()))
	serve := func(c echo.Context) error {
		setHeaders(c.Response().Header(), c.Request().Host)
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	redirect := func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, Path) }
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		e.Add(m, "/portal", redirect)
		e.Add(m, Path+"*", serve)
	}
}

// setHeaders sets what keeps the portal's pages to themselves: scripts, styles and connections
// only from this origin (the console's WebSocket relay included), no framing, no referrer (a
// page's hash names resources), and revalidation so an upgraded binary's files are picked up.
// Older browsers' 'self' does not cover ws: and wss:, so the request's host is named too, when
// it is a plain host[:port].
func setHeaders(h http.Header, host string) {
	connect := "'self'"
	if plainHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src "+connect+"; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// plainHost reports whether host holds only the characters of a DNS name, an IP address and a
// port, so it cannot add anything to a header it is written into.
func plainHost(host string) bool {
	if host == "" || len(host) > 300 {
		return false
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return true
}
