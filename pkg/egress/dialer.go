package egress

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// Dialer opens TCP connections to backends under a Policy, checking each address the dial
// tries after name resolution (a net.Dialer Control function, which runs before connect), so
// a name that resolves to a denied address is refused however it resolved at write time. It
// also refuses the node's own listeners, by port, on any of the host's addresses: loopback,
// unspecified (0.0.0.0, [::]), the interface addresses seen when the Dialer was made, and the
// listeners' own. A refused dial fails with an error wrapping a *DeniedError. It is safe for
// concurrent use.
//
// A dial through an HTTP proxy (HTTP_PROXY for REST backends) checks the proxy's address:
// the proxy, not the node, resolves the backend then, and host rules alone apply to it.
type Dialer struct {
	policy *Policy
	// ownPorts are the ports of the node's listeners; local the addresses that reach this host.
	ownPorts map[uint16]bool
	local    map[netip.Addr]bool
	base     net.Dialer
}

// NewDialer returns a Dialer enforcing p (nil allows every address but the node's own
// listeners) and refusing the listeners own, the node's traffic and admin listeners.
func NewDialer(p *Policy, own ...net.Addr) *Dialer {
	d := &Dialer{policy: p, ownPorts: map[uint16]bool{}, local: map[netip.Addr]bool{},
		base: net.Dialer{KeepAlive: 30 * time.Second}}
	for _, a := range own {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			d.ownPorts[ap.Port()] = true
			d.local[unmap(ap.Addr())] = true
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					d.local[unmap(ip)] = true
				}
			}
		}
	}
	return d
}

// DialContext dials addr ("host:port") on network after checking the host name's rules, then
// checks each resolved address before it connects.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		host = ""
	}
	// Host rules first, before a lookup: a denied name is never resolved.
	if err := d.policy.Check(host, netip.Addr{}, port); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	nd := d.base
	nd.Control = func(network, address string, c syscall.RawConn) error { return d.checkAddr(host, address) }
	return nd.DialContext(ctx, network, addr)
}

// Allow decides a dial to addr, resolved from host ("" when the dial named an address), as
// DialContext does before it connects: host's rules, then the address's. Dialers that
// connect by themselves (the gateway's event loops) call it for each address they try, and
// first with addr's address invalid (only its port set) to decide host's rules alone before
// they resolve it: a denied name is never looked up.
func (d *Dialer) Allow(host string, addr netip.AddrPort) error {
	if err := d.policy.Check(host, netip.Addr{}, addr.Port()); err != nil {
		return &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	if !addr.Addr().IsValid() {
		return nil
	}
	if err := d.checkAddr(host, addr.String()); err != nil {
		return &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	return nil
}

// checkAddr decides the resolved address ("ip:port") of a dial to host.
func (d *Dialer) checkAddr(host, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	a := unmap(ap.Addr())
	if d.ownPorts[ap.Port()] {
		for _, x := range addrsOf(a) {
			if x.IsLoopback() || x.IsUnspecified() || d.local[x] {
				return &DeniedError{Dest: destString(host, a, ap.Port()), Why: "it is one of the gateway node's own listeners"}
			}
		}
	}
	return d.policy.Check(host, a, ap.Port())
}

func splitHostPort(addr string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	return host, uint16(n), nil
}
