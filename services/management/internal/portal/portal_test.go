package portal_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/portal"
)

func server(t *testing.T) *httptest.Server {
	t.Helper()
	e := echo.New()
	portal.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestServesThePortal(t *testing.T) {
	t.Parallel()
	srv := server(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, _ := get(t, noRedirect, srv.URL+"/portal")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/portal/" {
		t.Errorf("GET /portal: %d Location %q, want 301 to /portal/", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, body := get(t, srv.Client(), srv.URL+"/portal/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<script type="module" src="js/app.js">`) {
		t.Fatalf("GET /portal/: %d\n%s", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "connect-src 'self' ws://" + host + " wss://" + host} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("Referrer-Policy = %q", got)
	}

	resp, _ = get(t, srv.Client(), srv.URL+"/portal/js/app.js")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("GET app.js: %d %q, want 200 text/javascript (browsers refuse modules of another type)", resp.StatusCode, ct)
	}
	resp, _ = get(t, srv.Client(), srv.URL+"/portal/nothing.js")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET a missing file: %d, want 404", resp.StatusCode)
	}
}

func TestOddHostIsLeftOutOfThePolicy(t *testing.T) {
	t.Parallel()
	srv := server(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/portal/", nil)
	req.Host = "evil; script-src *"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "evil") || strings.Contains(csp, "script-src *") {
		t.Errorf("Content-Security-Policy took the Host header in: %q", csp)
	}
}

var importRE = regexp.MustCompile(`(?m)^\s*import\s[^'"]*['"]([^'"]+)['"]`)

// TestModulesResolve checks every relative import of every module names an embedded file,
// so a renamed file cannot break the page silently.
func TestModulesResolve(t *testing.T) {
	t.Parallel()
	files := portal.Files()
	n := 0
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		for _, m := range importRE.FindAllStringSubmatch(string(b), -1) {
			n++
			target := path.Join(path.Dir(p), m[1])
			if _, err := fs.Stat(files, target); err != nil {
				t.Errorf("%s imports %s, which is not embedded", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("found %d imports; the pattern no longer matches the modules", n)
	}
}

// TestNoSecretLeaks keeps the rules the portal promises: the token lives in sessionStorage
// only, data never becomes HTML, and no inline script (the CSP would block it).
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	files := portal.Files()
	forbidden := map[string]string{
		"localStorage":       "the token belongs in sessionStorage only",
		"document.cookie":    "the portal keeps nothing in cookies",
		"innerHTML":          "data must not be parsed as HTML",
		"outerHTML":          "data must not be parsed as HTML",
		"insertAdjacentHTML": "data must not be parsed as HTML",
		"eval(":              "no eval",
		"access_token=":      "tokens never go into URLs the page builds",
	}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		for s, why := range forbidden {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains %q: %s", p, s, why)
			}
		}
		if strings.HasSuffix(p, ".html") && regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).Match(b) {
			t.Errorf("%s has an inline script", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
