// Package tcptest serves raw TCP on loopback for tests that write a peer's bytes by hand: a
// backend that answers out of turn, closes early, or sends what no HTTP server would.
package tcptest

import (
	"net"
	"testing"
)

// Serve accepts connections on a new loopback listener until the test ends and runs handle
// on each (n counts them from 0) on a goroutine of its own, closing the connection when
// handle returns; it returns the listener's address.
func Serve(tb testing.TB, handle func(c net.Conn, n int)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c, n)
			}()
		}
	}()
	return ln.Addr().String()
}
