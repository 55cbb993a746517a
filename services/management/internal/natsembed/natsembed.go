// Package natsembed runs a NATS server with JetStream inside the management process, for
// single-binary deployments (NATS_URL empty) and for tests.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Listen is the host:port clients connect to; port 0 picks a free port ("127.0.0.1:0", as tests
	// use). Empty means "127.0.0.1:4223", the management default, clear of a NATS on 4222.
	Listen string
	// StoreDir is where JetStream keeps its streams. Empty means a new temporary directory that
	// Shutdown removes, so streams do not outlive the server.
	StoreDir string
	// Log receives the server's warnings and errors; its notices are logged at debug level. Nil
	// discards everything.
	Log *slog.Logger
}

// DefaultListen is the address used when Options.Listen is empty.
const DefaultListen = "127.0.0.1:4223"

// startTimeout bounds the wait for the server to accept clients when ctx has no deadline;
// readyPoll is how often Start checks for readiness or a fatal start-up error (a port in use).
const (
	startTimeout = 10 * time.Second
	readyPoll    = 20 * time.Millisecond
)

// Server is a running embedded NATS server. Its methods are safe for concurrent use.
type Server struct {
	ns      *server.Server
	tempDir string // removed by Shutdown; empty when the caller owns StoreDir
}

// Start starts a server and returns once it accepts client connections, or an error if it does
// not before ctx ends (or within 10s when ctx has no deadline). ctx bounds only the start: the
// server runs until Shutdown.
func Start(ctx context.Context, opts Options) (*Server, error) {
	listen := opts.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("natsembed: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("natsembed: listen address %q: bad port", listen)
	}
	if port == 0 {
		// nats-server reads port 0 as its default 4222.
		port = server.RANDOM_PORT
	}

	s := &Server{}
	storeDir := opts.StoreDir
	if storeDir == "" {
		if s.tempDir, err = os.MkdirTemp("", "gatehouse-nats-"); err != nil {
			return nil, fmt.Errorf("natsembed: store dir: %w", err)
		}
		storeDir = s.tempDir
	}

	ns, err := server.NewServer(&server.Options{
		ServerName:             "gatehouse-embedded",
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               storeDir,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	})
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	s.ns = ns
	log := &logger{log: opts.Log, fatal: make(chan string, 1)}
	ns.SetLoggerV2(log, false, false, false)

	deadline := time.Now().Add(startTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	ns.Start()
	for !ns.ReadyForConnections(readyPoll) {
		select {
		case msg := <-log.fatal:
			s.Shutdown()
			return nil, fmt.Errorf("natsembed: %s", msg)
		case <-ctx.Done():
			s.Shutdown()
			return nil, fmt.Errorf("natsembed: not ready: %w", ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, errors.New("natsembed: server not ready for connections")
		}
	}
	if !ns.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("natsembed: JetStream did not start")
	}
	return s, nil
}

// ClientURL is the URL clients connect to, such as "nats://127.0.0.1:41873".
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server, closing client connections, and waits until it has stopped. It
// removes the store directory if Start created it. Calling it more than once is harmless.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}

// logger adapts the server's printf-style logging to slog. Notices (start-up chatter) go to
// debug; debug and trace output is switched off in SetLoggerV2 and dropped here too. A fatal
// message (the server cannot start, e.g. the port is in use) is also handed to Start on fatal.
type logger struct {
	log   *slog.Logger
	fatal chan string
}

func (l *logger) Noticef(format string, v ...any) {
	if l.log != nil {
		l.log.Debug(fmt.Sprintf(format, v...), "component", "nats")
	}
}

func (l *logger) Warnf(format string, v ...any) {
	if l.log != nil {
		l.log.Warn(fmt.Sprintf(format, v...), "component", "nats")
	}
}

func (l *logger) Errorf(format string, v ...any) {
	if l.log != nil {
		l.log.Error(fmt.Sprintf(format, v...), "component", "nats")
	}
}

func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.log != nil {
		l.log.Error(msg, "component", "nats")
	}
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l *logger) Debugf(string, ...any) {}
func (l *logger) Tracef(string, ...any) {}
