//go:build unix

package wsproxy

import "syscall"

// rawReads reports whether readers may read descriptors directly (reader.readRaw).
const rawReads = true

// sysRead is read(2) on a descriptor from syscall.RawConn.
func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
