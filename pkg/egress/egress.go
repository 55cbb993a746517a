// Package egress is the operator's policy for where API backends may be: lists of networks and
// host names to allow and deny, checked by management when a serviceUrl is written and by a
// gateway node when it dials, on the address the name resolved to (so a name that resolves
// somewhere else at dial time than at write time, DNS rebinding, gains nothing). Issue 12,
// docs/design.md "Backend egress policy".
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// DefaultDeny is what both services deny unless the operator says otherwise: the link-local
// ranges, where clouds serve instance metadata and credentials (169.254.169.254, fd00:ec2::254
// aside, which the operator can add).
const DefaultDeny = "169.254.0.0/16,fe80::/10"

// ErrDenied is the error of a destination the policy refuses; errors.As finds a *DeniedError.
var ErrDenied = errors.New("egress denied")

// DeniedError says which destination a policy refused and by which rule.
type DeniedError struct {
	// Dest is the destination as checked: "host (ip):port", "ip:port" or "host:port".
	Dest string
	// Rule is the deny rule that matched as the operator wrote it, or "" when the destination
	// is missing from a non-empty allow list.
	Rule string
	// Why is a rule's reason when the rule is built in ("the node's own listener").
	Why string
}

func (e *DeniedError) Error() string {
	switch {
	case e.Why != "":
		return fmt.Sprintf("egress to %s denied: %s", e.Dest, e.Why)
	case e.Rule == "":
		return fmt.Sprintf("egress to %s denied: not in the egress allow list", e.Dest)
	}
	return fmt.Sprintf("egress to %s denied by rule %q", e.Dest, e.Rule)
}

func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// rule is one list entry: a network or a host name, with a port or any (0).
type rule struct {
	raw    string
	prefix netip.Prefix // valid for a network rule
	// host is a lower-case host name without a trailing dot; "*.example.com" matches the
	// names below example.com, not example.com itself.
	host string
	port uint16
}

// Policy is an allow list and a deny list. A destination is refused when a deny rule matches
// it, or when the allow list is not empty and no allow rule matches it; deny wins. The zero
// Policy allows everything. A Policy is immutable and safe for concurrent use.
type Policy struct {
	allow, deny []rule
}

// Parse builds a policy from two comma- or space-separated lists. An entry is a network
// ("10.0.0.0/8", "fe80::/10"), an address ("169.254.169.254", "::1"), a host name
// ("metadata.google.internal") or every name below a domain ("*.internal"), each optionally
// with a port: "127.0.0.1:9091", "127.0.0.0/8:9091", "[::1]:9091", "localhost:9091". The
// list "none" is empty; an empty list is too, but assemblies read an empty deny list as
// DefaultDeny (DenyList), so "none" is how an operator turns the default off.
func Parse(allow, deny string) (*Policy, error) {
	var p Policy
	var err error
	if p.allow, err = parseList(allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	if p.deny, err = parseList(deny); err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	return &p, nil
}

// DenyList is the deny list an assembly uses for the operator's setting s: DefaultDeny when s
// is empty, s otherwise ("none" for no rule at all).
func DenyList(s string) string {
	if strings.TrimSpace(s) == "" {
		return DefaultDeny
	}
	return s
}

func parseList(s string) ([]rule, error) {
	if strings.TrimSpace(s) == "none" {
		return nil, nil
	}
	var out []rule
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		r, err := parseRule(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRule(s string) (rule, error) {
	r := rule{raw: s}
	body := s
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		// A network: the port, if any, follows the prefix length.
		bits, port, hasPort := strings.Cut(s[i+1:], ":")
		if hasPort {
			p, err := parsePort(port)
			if err != nil {
				return r, fmt.Errorf("%q: %w", s, err)
			}
			r.port = p
		}
		pfx, err := netip.ParsePrefix(s[:i] + "/" + bits)
		if err != nil {
			return r, fmt.Errorf("%q is not a network: %w", s, err)
		}
		r.prefix = pfx.Masked()
		return r, nil
	}
	if a, err := netip.ParseAddr(body); err == nil {
		r.prefix = netip.PrefixFrom(unmap(a), unmap(a).BitLen())
		return r, nil
	}
	if host, port, err := net.SplitHostPort(body); err == nil {
		p, err := parsePort(port)
		if err != nil {
			return r, fmt.Errorf("%q: %w", s, err)
		}
		r.port, body = p, host
		if a, err := netip.ParseAddr(body); err == nil {
			r.prefix = netip.PrefixFrom(unmap(a), unmap(a).BitLen())
			return r, nil
		}
	}
	host := strings.TrimSuffix(strings.ToLower(body), ".")
	if !validHostPattern(host) {
		return r, fmt.Errorf("%q is neither a network, an address nor a host name", s)
	}
	r.host = host
	return r, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not 1 to 65535", s)
	}
	return uint16(n), nil
}

// validHostPattern accepts DNS names of letters, digits, '-', '_' and '.', optionally led by "*.".
func validHostPattern(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// unmap turns an IPv4-mapped IPv6 address (::ffff:169.254.169.254) into its IPv4 form, so
// that IPv4 rules see it.
func unmap(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// IPv6 networks whose addresses carry an IPv4 address that a translator or a tunnel delivers
// to: NAT64's well-known prefix (RFC 6052, the address in the last 32 bits: 64:ff9b::a9fe:a9fe
// reaches 169.254.169.254 on a network that translates it), 6to4 (RFC 3056, the address in bits
// 16 to 47: 2002:a9fe:a9fe:: is the 6to4 site of 169.254.169.254) and the deprecated
// IPv4-compatible addresses (RFC 4291 §2.5.5.1, ::a.b.c.d). IPv4-mapped addresses
// (::ffff:a.b.c.d) are the IPv4 address itself and are unmapped before any check.
var (
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	v4Compatible = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address an IPv6 address of a NAT64, 6to4 or IPv4-compatible
// form carries; ok is false for any other address. :: and ::1 are the unspecified and loopback
// addresses, not IPv4-compatible ones.
func embeddedIPv4(a netip.Addr) (v4 netip.Addr, ok bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case v4Compatible.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	}
	return netip.Addr{}, false
}

// addrsOf are the addresses deny rules and the node's own listeners must be checked against for
// the address a: a itself (IPv4-mapped addresses unmapped), the IPv4 address a NAT64, 6to4 or
// IPv4-compatible address embeds, and the loopback addresses for an unspecified address (a
// connection to 0.0.0.0 or [::] reaches the host itself).
func addrsOf(a netip.Addr) []netip.Addr {
	a = unmap(a)
	out := []netip.Addr{a}
	if v4, ok := embeddedIPv4(a); ok {
		out = append(out, v4)
	}
	for _, x := range out {
		if x.IsUnspecified() {
			return append(out, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback())
		}
	}
	return out
}

// matches reports whether r matches the destination: host (lower case, "" when unknown), one
// of addrs, port.
func (r rule) matches(host string, addrs []netip.Addr, port uint16) bool {
	if r.port != 0 && r.port != port {
		return false
	}
	if r.prefix.IsValid() {
		for _, a := range addrs {
			if r.prefix.Contains(a) {
				return true
			}
		}
		return false
	}
	if host == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(r.host, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return host == r.host
}

// Check decides a destination: host is the name the URL gave ("" for an address), addr the
// address it resolved to (the zero Addr when not resolved yet), port the port. With no
// address, network rules cannot match, so only host rules decide, and an allow list with
// networks in it admits the name for the dial to decide. Deny rules see every address the
// destination stands for (addrsOf: the IPv4 address an IPv6 form embeds, loopback for an
// unspecified address); allow rules see the address itself, so that an embedding form never
// widens an allow list.
func (p *Policy) Check(host string, addr netip.Addr, port uint16) error {
	if p == nil {
		return nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var addrs, self []netip.Addr
	if addr.IsValid() {
		addrs, self = addrsOf(addr), []netip.Addr{unmap(addr)}
	}
	dest := destString(host, addr, port)
	for _, r := range p.deny {
		if r.matches(host, addrs, port) {
			return &DeniedError{Dest: dest, Rule: r.raw}
		}
	}
	if len(p.allow) == 0 {
		return nil
	}
	for _, r := range p.allow {
		if r.matches(host, self, port) || !addr.IsValid() && r.prefix.IsValid() {
			return nil
		}
	}
	return &DeniedError{Dest: dest}
}

func destString(host string, addr netip.Addr, port uint16) string {
	p := strconv.Itoa(int(port))
	switch {
	case host != "" && addr.IsValid():
		return host + " (" + addr.String() + "):" + p
	case addr.IsValid():
		return netip.AddrPortFrom(addr, port).String()
	}
	return net.JoinHostPort(host, p)
}

// CheckURL decides a backend URL before any name is resolved, as management does when a
// serviceUrl is written: an address in the URL is checked as an address, "localhost" and the
// names below it as the loopback addresses they always resolve to (RFC 6761), and other names
// by the host rules (their addresses are checked when a node dials). A host whose last label
// is a number but which is not an IPv4 address in dotted-decimal form ("2130706433",
// "0x7f.1", "127.1") is refused: resolvers read such names as addresses in forms the rules
// would not see.
func (p *Policy) CheckURL(u *url.URL) error {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port, err := portOf(u)
	if err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check("", a, port)
	}
	labels := strings.Split(host, ".")
	if last := labels[len(labels)-1]; last != "" && strings.Trim(strings.ToLower(last), "0123456789abcdefx") == "" &&
		(last[0] >= '0' && last[0] <= '9') {
		return &DeniedError{Dest: net.JoinHostPort(host, strconv.Itoa(int(port))),
			Why: "the host looks like an IPv4 address in a form other than dotted decimal; write the address as a.b.c.d"}
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			if err := p.Check(host, a, port); err != nil {
				return err
			}
		}
		return nil
	}
	return p.Check(host, netip.Addr{}, port)
}

// portOf is the URL's port, or its scheme's.
func portOf(u *url.URL) (uint16, error) {
	if s := u.Port(); s != "" {
		return parsePort(s)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		return 80, nil
	case "https", "wss":
		return 443, nil
	}
	return 0, fmt.Errorf("egress: no port for scheme %q", u.Scheme)
}
