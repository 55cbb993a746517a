//go:build !linux

package wsproxy

import "syscall"

// parking reports whether quiet connections can be parked on this system: only on Linux,
// where the parker uses epoll. Elsewhere each direction keeps its goroutine.
const parking = false

func parkConn(syscall.RawConn, *bool, func()) (uint64, bool) { return 0, false }

func unpark(uint64) bool { return false }
