package egress

import "net"

// SetResolver makes d resolve names with r (a test's own DNS server).
func (d *Dialer) SetResolver(r *net.Resolver) { d.base.Resolver = r }
