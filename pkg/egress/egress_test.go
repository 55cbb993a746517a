package egress_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"gatehouse.dev/pkg/egress"
)

func mustParse(t *testing.T, allow, deny string) *egress.Policy {
	t.Helper()
	p, err := egress.Parse(allow, deny)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseRefusesMalformedEntries(t *testing.T) {
	t.Parallel()
	for _, e := range []string{"10.0.0.0/33", "10.0.0.0/8:0", "10.0.0.0/8:70000", "1.2.3.4:x", "bad_host!", "a..b", "exa$mple.com",
		"[::1]:", "*.", "-"} {
		if _, err := egress.Parse("", e); err == nil {
			t.Errorf("Parse(deny %q) accepted it", e)
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	def := mustParse(t, "", egress.DefaultDeny+",127.0.0.0/8:9091,[::1]:9091,metadata.google.internal,*.corp.internal")
	allowOnly := mustParse(t, "10.0.0.0/8,*.example.com,api.partner.net:443", egress.DefaultDeny)
	for _, tc := range []struct {
		p       *egress.Policy
		url     string
		allowed bool
	}{
		{def, "https://chat.example.com/ws", true},
		{def, "ws://127.0.0.1:9000", true},
		{def, "ws://localhost:9000", true},
		{def, "http://169.254.169.254/latest/meta-data", false},
		{def, "http://[fe80::1%25eth0]:80", false},
		{def, "http://[::ffff:169.254.169.254]/", false},
		{def, "http://[64:ff9b::a9fe:a9fe]/", false},
		{def, "http://127.0.0.1:9091/metrics", false},
		{def, "http://127.9.9.9:9091/metrics", false},
		{def, "http://localhost:9091/metrics", false},
		{def, "http://LOCALHOST.:9091/metrics", false},
		{def, "http://app.localhost:9091/metrics", false},
		{def, "http://0.0.0.0:9091/metrics", false},
		{def, "http://[::]:9091/metrics", false},
		{def, "http://[::1]:9091/metrics", false},
		{def, "http://2130706433:9091/", false},
		{def, "http://0x7f.1:9091/", false},
		{def, "http://127.1:9091/", false},
		{def, "http://Metadata.Google.Internal/", false},
		{def, "http://vault.corp.internal/", false},
		{def, "http://corp.internal/", true},
		{allowOnly, "https://10.1.2.3/", true},
		{allowOnly, "https://11.1.2.3/", false},
		{allowOnly, "https://svc.example.com/", true},
		{allowOnly, "https://api.partner.net/", true},
		{allowOnly, "http://api.partner.net/", true}, // a name again: the dial decides
		{allowOnly, "https://elsewhere.net/", true},  // a name: the allow list has networks, so the dial decides
		{allowOnly, "https://10.169.254.1/", true},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		err = tc.p.CheckURL(u)
		if (err == nil) != tc.allowed {
			t.Errorf("CheckURL(%s) = %v, want allowed %v", tc.url, err, tc.allowed)
		}
		if err != nil && !errors.Is(err, egress.ErrDenied) {
			t.Errorf("CheckURL(%s) = %v, not ErrDenied", tc.url, err)
		}
	}
	onlyHosts := mustParse(t, "*.example.com,api.partner.net:443", "")
	for _, u := range []string{"https://elsewhere.net/", "http://api.partner.net/", "https://10.1.2.3/"} {
		if err := onlyHosts.CheckURL(mustURL(t, u)); err == nil {
			t.Errorf("%s is outside an allow list of names only, but allowed", u)
		}
	}
	if err := onlyHosts.CheckURL(mustURL(t, "https://api.partner.net/")); err != nil {
		t.Errorf("https://api.partner.net/: %v", err)
	}
	var de *egress.DeniedError
	if err := def.CheckURL(&url.URL{Scheme: "http", Host: "169.254.169.254"}); !errors.As(err, &de) || de.Rule != "169.254.0.0/16" {
		t.Errorf("the refusal names rule %v, want 169.254.0.0/16", err)
	}
}

// TestAttackIPv4EmbeddedInIPv6 writes denied IPv4 addresses in the IPv6 forms that carry them
// (IPv4-mapped, NAT64, 6to4, IPv4-compatible): deny rules see the embedded address, allow
// rules only the address as written, and IPv6 addresses of no such form are their own.
func TestAttackIPv4EmbeddedInIPv6(t *testing.T) {
	t.Parallel()
	deny := mustParse(t, "", egress.DefaultDeny+",127.0.0.0/8:9091")
	allow := mustParse(t, "10.0.0.0/8", "none")
	for _, tc := range []struct {
		p       *egress.Policy
		addr    string
		port    uint16
		allowed bool
	}{
		{deny, "::ffff:169.254.169.254", 80, false},
		{deny, "::ffff:a9fe:a9fe", 80, false},
		{deny, "64:ff9b::169.254.169.254", 80, false},
		{deny, "64:ff9b::a9fe:a9fe", 80, false},
		{deny, "2002:a9fe:a9fe::", 80, false},
		{deny, "2002:a9fe:a9fe:1234::1", 80, false},
		{deny, "::169.254.169.254", 80, false},
		{deny, "::a9fe:a9fe", 80, false},
		{deny, "2002:7f00:1::", 9091, false},
		{deny, "64:ff9b::7f00:1", 9091, false},
		{deny, "::127.0.0.1", 9091, false},
		{deny, "2002:7f00:1::", 9000, true},
		{deny, "2002:0:0::", 9091, false},        // 6to4 of 0.0.0.0: the host itself
		{deny, "::1", 9000, true},                // loopback, not IPv4-compatible 0.0.0.1
		{deny, "2001:db8::a9fe:a9fe", 80, true},  // no embedding form
		{deny, "64:ff9b:1::a9fe:a9fe", 80, true}, // outside the well-known prefix
		{allow, "10.1.2.3", 443, true},
		{allow, "::ffff:10.1.2.3", 443, true}, // the same address
		{allow, "2002:a01:203::", 443, false},
		{allow, "64:ff9b::a01:203", 443, false},
		{allow, "::10.1.2.3", 443, false},
	} {
		err := tc.p.Check("", netip.MustParseAddr(tc.addr), tc.port)
		if (err == nil) != tc.allowed {
			t.Errorf("Check(%s port %d) = %v, want allowed %v", tc.addr, tc.port, err, tc.allowed)
		}
	}
	for _, u := range []string{"http://[2002:a9fe:a9fe::1]/", "http://[::169.254.169.254]/", "http://[64:ff9b::a9fe:a9fe]/"} {
		if err := deny.CheckURL(mustURL(t, u)); !errors.Is(err, egress.ErrDenied) {
			t.Errorf("CheckURL(%s) = %v, want ErrDenied", u, err)
		}
	}
	// The node refuses its own listener written in a 6to4 or NAT64 form, before connecting.
	own := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(own.Close)
	port := strconv.Itoa(own.Listener.Addr().(*net.TCPAddr).Port)
	d := egress.NewDialer(mustParse(t, "", "none"), own.Listener.Addr())
	for _, host := range []string{"2002:7f00:1::1", "64:ff9b::7f00:1", "::127.0.0.1"} {
		if c, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort(host, port)); !errors.Is(err, egress.ErrDenied) {
			if c != nil {
				c.Close()
			}
			t.Errorf("dial [%s]:%s (the node's own listener) = %v, want ErrDenied", host, port, err)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fakeDNS answers every A question with addr and every other question with no answer: a name
// server an attacker controls, pointing a harmless-looking name anywhere.
func fakeDNS(t *testing.T, addr netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 12 {
				continue
			}
			end := 12
			for end < len(q) && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5 // the root label, QTYPE, QCLASS
			if end > len(q) {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[end-4:])
			resp := append([]byte(nil), q[:end]...)
			resp[2], resp[3] = 0x81, 0x80 // response, recursion desired and available, NOERROR
			binary.BigEndian.PutUint16(resp[6:], 0)
			binary.BigEndian.PutUint16(resp[8:], 0)
			binary.BigEndian.PutUint16(resp[10:], 0)
			if qtype == 1 {
				binary.BigEndian.PutUint16(resp[6:], 1)
				a := addr.As4()
				resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				resp = append(resp, a[:]...)
			}
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestAttackRebindToMetadata points an innocent name at the metadata address, as DNS
// rebinding does after management accepted the name: the dial is refused on the address.
func TestAttackRebindToMetadata(t *testing.T) {
	t.Parallel()
	p := mustParse(t, "", egress.DefaultDeny)
	if err := p.CheckURL(&url.URL{Scheme: "http", Host: "innocent.example.com"}); err != nil {
		t.Fatalf("the name itself is refused at write time: %v", err)
	}
	d := egress.NewDialer(p)
	d.SetResolver(fakeDNS(t, netip.MustParseAddr("169.254.169.254")))
	_, err := d.DialContext(t.Context(), "tcp", "innocent.example.com:80")
	var de *egress.DeniedError
	if !errors.As(err, &de) || de.Rule != "169.254.0.0/16" || !strings.Contains(err.Error(), "169.254.169.254") {
		t.Fatalf("dial = %v, want refused by 169.254.0.0/16 naming the address", err)
	}
}

// TestAttackOwnListeners dials the node's own listener, by address and by a name resolving to
// it, on every address that reaches it; another port on loopback stays reachable.
func TestAttackOwnListeners(t *testing.T) {
	t.Parallel()
	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	t.Cleanup(own.Close)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(backend.Close)
	ownAddr := own.Listener.Addr()
	port := ownAddr.(*net.TCPAddr).Port
	d := egress.NewDialer(mustParse(t, "", egress.DefaultDeny), ownAddr)
	for _, addr := range []string{ownAddr.String(), net.JoinHostPort("localhost", strconv.Itoa(port)), net.JoinHostPort("0.0.0.0", strconv.Itoa(port)),
		net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), net.JoinHostPort("::ffff:127.0.0.1", strconv.Itoa(port))} {
		c, err := d.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("dial %s: connected to the node's own listener", addr)
			continue
		}
		if !errors.Is(err, egress.ErrDenied) {
			t.Errorf("dial %s: %v, want ErrDenied", addr, err)
		}
	}
	rebound := egress.NewDialer(mustParse(t, "", egress.DefaultDeny), ownAddr)
	rebound.SetResolver(fakeDNS(t, netip.MustParseAddr("127.0.0.1")))
	if _, err := rebound.DialContext(t.Context(), "tcp", net.JoinHostPort("innocent.example.com", strconv.Itoa(port))); !errors.Is(err, egress.ErrDenied) {
		t.Errorf("dial a name resolving to the own listener: %v, want ErrDenied", err)
	}
	c, err := d.DialContext(t.Context(), "tcp", backend.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial a loopback backend: %v", err)
	}
	c.Close()
}

// TestAllow decides addresses as DialContext does, for dialers that connect by themselves:
// the node's own listener on any local address, a denied range, a denied name; a backend
// on another loopback port passes.
func TestAllow(t *testing.T) {
	t.Parallel()
	own := netip.MustParseAddrPort("127.0.0.1:18080")
	d := egress.NewDialer(mustParse(t, "", egress.DefaultDeny+",deny.example.com"), net.TCPAddrFromAddrPort(own))
	for _, c := range []struct {
		host, addr string
		denied     bool
	}{
		{"", "127.0.0.1:18080", true},
		{"", "127.0.0.2:18080", true},
		{"localhost", "[::1]:18080", true},
		{"", "[::ffff:127.0.0.1]:18080", true},
		{"innocent.example.com", "169.254.169.254:80", true},
		{"deny.example.com", "192.0.2.10:80", true},
		{"", "127.0.0.1:18081", false},
	} {
		err := d.Allow(c.host, netip.MustParseAddrPort(c.addr))
		if c.denied != errors.Is(err, egress.ErrDenied) {
			t.Errorf("Allow(%q, %s) = %v, want denied %v", c.host, c.addr, err, c.denied)
		}
	}
}

// TestAllowName: Allow with no address decides the name's rules alone, before a lookup.
func TestAllowName(t *testing.T) {
	t.Parallel()
	d := egress.NewDialer(mustParse(t, "", egress.DefaultDeny+",deny.example.com"), net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:18080")))
	if err := d.Allow("deny.example.com", netip.AddrPortFrom(netip.Addr{}, 80)); !errors.Is(err, egress.ErrDenied) {
		t.Errorf("a denied name: %v, want denied", err)
	}
	if err := d.Allow("fine.example.com", netip.AddrPortFrom(netip.Addr{}, 18080)); err != nil {
		t.Errorf("an allowed name, before its addresses are known: %v", err)
	}
}
