package catalog

import "time"

// SetClock makes c read the time from now, so that tests can move it past a token's expiry.
func SetClock(c *Catalog, now func() time.Time) { c.now = now }
