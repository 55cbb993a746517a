package wsproxy

import (
	"context"
	"net/http"
	"net/netip"
	"time"
)

// FrontOptions configure a Front.
type FrontOptions struct {
	// Handler serves the upgrade requests the front reads (the traffic handler). It gets an
	// http.ResponseWriter that supports Hijack (not Flush, deadlines, or 1xx answers), and a
	// request with the fields net/http's server sets (RemoteAddr, RequestURI, Host). Its
	// context is Context: unlike net/http's, it is not cancelled when the client goes away
	// (the backend dial is bounded by its own timeout) and carries neither
	// http.ServerContextKey nor http.LocalAddrContextKey.
	Handler http.Handler
	// Context is the context of the requests the front serves; nil means Background.
	Context context.Context
	// MaxHeaderBytes: a request whose line and headers are longer is handed to net/http,
	// which applies its own limit. Zero means http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// REST, when set, serves plain HTTP requests on the loops themselves (rest_linux.go):
	// those without a body that REST.ServeLoop takes, proxied to plain-HTTP backends over
	// connections the loops keep. Without it every request other than an upgrade goes to
	// net/http.
	REST RESTHandler
	// DialAllow decides each address the loops dial for REST calls (the egress policy);
	// nil allows every address.
	DialAllow func(host string, addr netip.AddrPort) error
	// IdleTimeout closes a connection whose requests the loops serve once it has waited
	// this long for its next request, and ReadHeaderTimeout once a request's header has
	// taken this long to come, as net/http's Server options of those names. Zero means
	// 2 minutes and 10 seconds.
	IdleTimeout, ReadHeaderTimeout time.Duration
}

// RESTHandler serves plain HTTP requests on the event loops (FrontOptions.REST).
type RESTHandler interface {
	// ServeLoop decides r on a loop, so it must not wait for anything but the processor.
	// It returns false, having done nothing the client or the node's counts would see,
	// when r must be served on a goroutine: the connection then goes to net/http with r
	// unread. Otherwise it has written the whole answer to w and returns a nil call, or it
	// returns the call the loop makes, with w's header holding the fields to add to the
	// backend's response.
	ServeLoop(w http.ResponseWriter, r *http.Request) (*LoopCall, bool)
}

// LoopCall is a request a loop sends to a plain-HTTP backend, relaying the answer to the
// client as net/http's reverse proxy would: informational responses passed on, hop-by-hop
// fields dropped, the body framed as it came (a length, chunks with their trailer, or the
// end of the connection).
type LoopCall struct {
	// Request is what to send: an http:// URL, the Host and header fields, a method; no body.
	Request *http.Request
	// Result hears how the call ended.
	Result LoopResult
	// ResponseHeaderTimeout bounds the wait for the response's header; zero means none.
	ResponseHeaderTimeout time.Duration
}

// LoopResult hears, on the loop, how a LoopCall ended: one of its methods is called once.
type LoopResult interface {
	// Response is the final response's status and header, without its hop-by-hop fields,
	// before either reaches the client.
	Response(status int, h http.Header)
	// Failed says that no response came (the backend could not be reached, broke the
	// connection, answered something that is not HTTP, took longer than
	// ResponseHeaderTimeout, or the client went away first) and writes the client's answer
	// to w.
	Failed(w http.ResponseWriter, err error)
}

// LoopFuncs is a LoopResult of two functions.
type LoopFuncs struct {
	OnResponse func(status int, h http.Header)
	OnFailed   func(w http.ResponseWriter, err error)
}

func (f LoopFuncs) Response(status int, h http.Header)      { f.OnResponse(status, h) }
func (f LoopFuncs) Failed(w http.ResponseWriter, err error) { f.OnFailed(w, err) }
