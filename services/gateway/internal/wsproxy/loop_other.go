//go:build !linux

package wsproxy

import (
	"bufio"
	"errors"
	"net"
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
