package wsproxy_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

	"gatehouse.dev/gateway/internal/wsproxy"
)

var ringFlag = flag.Bool("wsproxy.ring", true, "the event loops batch through io_uring (false: read and write per socket)")

var engineFlag = flag.String("wsproxy.engine", "loop", "the engine the session tests run on: loop (the event-loop engine; the goroutine engine where it is unsupported) or goroutine")

var frontFlag = flag.Bool("wsproxy.front", true, "with the loop engine, the handshake runs on the loops: they accept plain clients and serve their upgrade requests (wsproxy.Front) and dial ws backends (DialRequest.Engine); false: net/http and net.Dial do, and the session takes both connections from the runtime's poller")

// frontEngine is the engine the test gateway serves handshakes and dials backends with, or nil.
func frontEngine() *wsproxy.Engine {
	if *frontFlag {
		return testEngine
	}
	return nil
}

// testEngine is the engine sessions of the tests run on; nil is the goroutine engine.
var testEngine *wsproxy.Engine

func TestMain(m *testing.M) {
	flag.Parse()
	switch *engineFlag {
	case "loop":
		e, err := wsproxy.NewEngine(wsproxy.EngineOptions{Loops: 2, NoRing: !*ringFlag})
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		testEngine = e
	case "goroutine":
	default:
		fmt.Fprintf(os.Stderr, "-wsproxy.engine=%s: want loop or goroutine\n", *engineFlag)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
