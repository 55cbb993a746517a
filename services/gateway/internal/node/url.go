package node

import (
	"context"
	"net"
	"os"
	"time"
)

// reachableHostname names this machine for a listener on every interface: its hostname when
// that resolves (a container's name in compose, a VM's name), else 127.0.0.1.
func reachableHostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if addrs, err := net.DefaultResolver.LookupHost(ctx, name); err != nil || len(addrs) == 0 {
		return "127.0.0.1"
	}
	return name
}

// listenerURL is the ws:// (wss:// with TLS) URL of a listener's address, with an unspecified
// host (0.0.0.0, ::) replaced by reachableHostname: the default of GATEWAY_PUBLIC_URL.
func listenerURL(addr net.Addr, tls bool) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = reachableHostname()
	}
	scheme := "ws"
	if tls {
		scheme = "wss"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
