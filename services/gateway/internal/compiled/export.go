package compiled

import (
	"io"

	"gatehouse.dev/pkg/configwire"
)

// Export returns the Builder's current state as a snapshot.
func (b *Builder) Export() configwire.Snapshot {
	c := b.Capture()
	snap := c.header()
	snap.Entities = append(make([]configwire.Entity, 0, len(c.ents)+c.subs.len()), c.ents...)
	c.subs.eachSub(func(s *Subscription) { snap.Entities = append(snap.Entities, s.wire().Entity()) })
	return snap
}

// Capture is the Builder's state at one revision, taken cheaply so that it can be written out
// on another goroutine while the Builder moves on: the subscriptions are those of the current
// Config's key index, which is immutable, and only the other entities (thousands, not
// millions) are copied. A subscription without a valid key hash, which no request can use, is
// left out.
type Capture struct {
	serviceID, service, gateway string
	revision                    int64
	ents                        []configwire.Entity
	subs                        *subIndex
}

// Capture captures the Builder's current state, for the on-disk cache.
func (b *Builder) Capture() *Capture {
	c := &Capture{serviceID: b.serviceID, service: b.service, gateway: b.gateway, revision: b.revision,
		ents: make([]configwire.Entity, 0, len(b.ents))}
	for _, e := range b.ents {
		c.ents = append(c.ents, e)
	}
	if b.cur != nil {
		c.subs = b.cur.subs
	}
	return c
}

// Revision is the revision captured.
func (c *Capture) Revision() int64 { return c.revision }

func (c *Capture) header() configwire.Snapshot {
	return configwire.Snapshot{ServiceID: c.serviceID, Service: c.service, Gateway: c.gateway, Revision: c.revision}
}

// Write writes the capture to w as a snapshot stream (configwire.SnapshotStream), one entity
// at a time, so that memory does not grow with the size of the configuration.
func (c *Capture) Write(w io.Writer) error {
	sw, err := configwire.NewSnapshotWriter(w, configwire.SnapshotStream, c.header())
	if err != nil {
		return err
	}
	for _, e := range c.ents {
		if err := sw.WriteEntity(e); err != nil {
			return err
		}
	}
	c.subs.eachSub(func(s *Subscription) {
		if err == nil {
			err = sw.WriteSubscription(s.wire())
		}
	})
	if err != nil {
		return err
	}
	return sw.Close()
}

// wire is s as management sends it.
func (s *Subscription) wire() configwire.Subscription {
	return configwire.Subscription{Name: s.Name, Scope: s.Scope(), State: s.State(), OwnerID: s.OwnerID, StartDate: s.StartDate(),
		KeyHashes: s.keyHashes()}
}

// Empty returns a Config serving nothing at revision rev (the service was deleted) and resets
// the Builder, so the next snapshot starts afresh.
func (b *Builder) Empty(rev int64) *Config {
	*b = Builder{env: b.env}
	return &Config{Revision: rev}
}
