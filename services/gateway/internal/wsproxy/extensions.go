package wsproxy

import (
	"fmt"
	"net/http"
	"strings"
)

// deflate is the one WebSocket extension the relay understands (RFC 7692).
const deflate = "permessage-deflate"

// extensionNames returns the names of the extensions listed in h's
// Sec-WebSocket-Extensions (RFC 6455 §9.1), lower-cased, in order.
func extensionNames(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for _, ext := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(ext, ";")
			if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
				names = append(names, name)
			}
		}
	}
	return names
}

// NegotiatedDeflate reports whether a handshake response header h accepts
// permessage-deflate, which lets data frames carry RSV1 (RFC 7692 §6).
func NegotiatedDeflate(h http.Header) bool {
	for _, n := range extensionNames(h) {
		if n == deflate {
			return true
		}
	}
	return false
}

// FilterExtensionOffer rewrites the client's Sec-WebSocket-Extensions in the upgrade
// request headers h before they go to the backend: only permessage-deflate offers are
// kept, and only when allowDeflate; any other extension would give meaning to frame bits
// the relay cannot check, so it is never offered.
func FilterExtensionOffer(h http.Header, allowDeflate bool) {
	var kept []string
	if allowDeflate {
		for _, v := range h.Values("Sec-WebSocket-Extensions") {
			for _, ext := range strings.Split(v, ",") {
				name, _, _ := strings.Cut(ext, ";")
				if strings.EqualFold(strings.TrimSpace(name), deflate) {
					kept = append(kept, strings.TrimSpace(ext))
				}
			}
		}
	}
	h.Del("Sec-WebSocket-Extensions")
	if len(kept) > 0 {
		h.Set("Sec-WebSocket-Extensions", strings.Join(kept, ", "))
	}
}

// CheckExtensionAnswer checks that the backend's 101 header resp accepts only extensions
// that the request header offered (RFC 6455 §9.1: a server must not answer with one that
// was not offered), at most once each. An error is a backend that broke the handshake.
func CheckExtensionAnswer(offered, resp http.Header) error {
	offers := extensionNames(offered)
	seen := map[string]bool{}
	for _, n := range extensionNames(resp) {
		ok := false
		for _, o := range offers {
			ok = ok || o == n
		}
		if !ok || seen[n] {
			return fmt.Errorf("%w: extension %q accepted but not offered", ErrBadHandshake, n)
		}
		seen[n] = true
	}
	return nil
}
