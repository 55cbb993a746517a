//go:build !unix

package wsproxy

import "errors"

// rawReads reports whether readers may read descriptors directly: not here, where readers
// go through net.Conn.Read.
const rawReads = false

func sysRead(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
