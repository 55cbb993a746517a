//go:build !linux

package wsproxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
)

// Engine runs sessions on event loops; on this system it cannot (no epoll), and
// Engine.NewSession runs every session on the goroutine engine.
type Engine struct{}

// NewEngine fails on this system: the event-loop engine needs epoll.
func NewEngine(opt EngineOptions) (*Engine, error) {
	return nil, errors.ErrUnsupported
}

type loopSession = goSession

func (e *Engine) newLoopSession(net.Conn, *bufio.Reader, *Backend, Limits, Hooks) *loopSession {
	return nil
}

// TLSListener returns ln: without event loops TLS connections stay on goroutines.
func TLSListener(ln net.Listener) net.Listener { return ln }

// loopTransport returns c: without event loops TLS connections stay on goroutines.
func loopTransport(c net.Conn) net.Conn { return c }

// Front is unsupported on this system (see the Linux one): Engine.Front fails.
type Front struct{ net.Listener }

// Front fails on this system.
func (e *Engine) Front(ln net.Listener, opt FrontOptions) (*Front, error) {
	return nil, errors.ErrUnsupported
}

// Wait returns at once.
func (f *Front) Wait(ctx context.Context) {}

// Counts returns zeros.
func (f *Front) Counts() (accepted, served int64) { return 0, 0 }

func (e *Engine) dialAddr(ctx context.Context, addr string, allow func(host string, addr netip.AddrPort) error) (net.Conn, error) {
	return nil, errors.ErrUnsupported
}
