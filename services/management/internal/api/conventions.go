package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// ARM's request-tracking headers (reference/apim-surface.md §10).
const (
	headerRequestID         = "x-ms-request-id"
	headerCorrelationID     = "x-ms-correlation-request-id"
	headerClientRequestID   = "x-ms-client-request-id"
	headerReturnClientReqID = "x-ms-return-client-request-id"
	maxTrackingHeaderLength = 256
	armSubscriptionsPrefix  = "/subscriptions/"
	armProvidersPrefix      = "/providers/"
)

// segmentTrie is the tree of the fixed path segments of the registered routes: each node maps a
// lower-case segment to its canonical spelling and child, and has at most one parameter child.
// It is built once, after the routes, and only read afterwards.
type segmentTrie struct {
	canonical string
	static    map[string]*segmentTrie
	param     *segmentTrie
}

// newSegmentTrie builds the trie of the routes' paths.
func newSegmentTrie(routes []*echo.Route) *segmentTrie {
	root := &segmentTrie{}
	for _, r := range routes {
		n := root
		for _, seg := range strings.Split(strings.Trim(r.Path, "/"), "/") {
			n = n.child(seg)
		}
	}
	return root
}

// child returns the node below n for the route segment seg, adding it when missing.
func (n *segmentTrie) child(seg string) *segmentTrie {
	if strings.HasPrefix(seg, ":") || seg == "*" {
		if n.param == nil {
			n.param = &segmentTrie{}
		}
		return n.param
	}
	if n.static == nil {
		n.static = map[string]*segmentTrie{}
	}
	key := strings.ToLower(seg)
	c, ok := n.static[key]
	if !ok {
		c = &segmentTrie{canonical: seg}
		n.static[key] = c
	}
	return c
}

// canonicalize rewrites the fixed segments of the escaped path p to the case the routes spell
// them in, leaving parameter values as they are: "/subscriptions/s/resourcegroups/rg/providers/
// microsoft.apimanagement/service/x/Apis" routes as ".../resourceGroups/rg/providers/
// Microsoft.ApiManagement/service/x/apis". A fixed segment wins over a parameter at the same
// place, as in echo's router; where no route continues, the rest is left alone.
func (n *segmentTrie) canonicalize(p string) string {
	segs := strings.Split(p, "/")
	node := n
	for i := 1; i < len(segs) && node != nil; i++ {
		if c, ok := node.static[strings.ToLower(segs[i])]; ok {
			segs[i], node = c.canonical, c
			continue
		}
		node = node.param
	}
	return strings.Join(segs, "/")
}

// armConventions runs before routing. On ARM paths it rewrites the fixed path segments and the
// names of known query options to their canonical case, since ARM treats them
// case-insensitively (docs/arm.md); on every request it sets the tracking headers: an
// x-ms-correlation-request-id (the caller's, or a new one) and, when the caller asks with
// x-ms-return-client-request-id: true, its x-ms-client-request-id.
func (s *Server) armConventions(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if isARMPath(r.URL.Path) {
			s.canonicalPath(r)
			canonicalQuery(r)
		}
		h := c.Response().Header()
		corr := trackingID(r.Header.Get(headerCorrelationID))
		if corr == "" {
			corr = uuid.NewString()
		}
		h.Set(headerCorrelationID, corr)
		if strings.EqualFold(r.Header.Get(headerReturnClientReqID), "true") {
			if id := trackingID(r.Header.Get(headerClientRequestID)); id != "" {
				h.Set(headerClientRequestID, id)
			}
		}
		return next(c)
	}
}

// isARMPath reports whether p is below /subscriptions/ or /providers/, in any case.
func isARMPath(p string) bool {
	lp := strings.ToLower(p)
	return strings.HasPrefix(lp, armSubscriptionsPrefix) || strings.HasPrefix(lp, armProvidersPrefix)
}

// canonicalPath rewrites r's path (escaped and unescaped alike) with the route trie.
func (s *Server) canonicalPath(r *http.Request) {
	escaped := s.fixed.canonicalize(r.URL.EscapedPath())
	plain, err := url.PathUnescape(escaped)
	if err != nil {
		return // echo answers 404 or decodeParams 400 for the unchanged path
	}
	hadRaw := r.URL.RawPath != ""
	r.URL.Path = plain
	r.URL.RawPath = ""
	if hadRaw {
		r.URL.RawPath = escaped
	}
}

// trackingID is v when it can be echoed in a header: printable ASCII, at most 256 bytes; else "".
func trackingID(v string) string {
	if len(v) > maxTrackingHeaderLength {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}
