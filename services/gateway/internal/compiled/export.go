package compiled

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"time"

	"gatehouse.dev/pkg/configwire"
)

// Export returns the Builder's current state as a snapshot.
func (b *Builder) Export() configwire.Snapshot {
	c := b.Capture()
	snap := c.header()
	snap.Entities = append(make([]configwire.Entity, 0, len(c.ents)+c.subs.len()), c.ents...)
	c.subs.each(func(s *Subscription) { snap.Entities = append(snap.Entities, subscriptionEntity(s)) })
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

// Write writes the capture to w as the JSON document of a configwire.Snapshot, one entity at
// a time, so that memory does not grow with the size of the configuration.
func (c *Capture) Write(w io.Writer) error {
	snap := c.header()
	snap.Entities = []configwire.Entity{}
	head, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	// head ends with the empty entity list, `[]}`: the entities go between its brackets.
	if !bytes.HasSuffix(head, []byte("[]}")) {
		return errors.New("compiled: the snapshot encoding does not end with its entities")
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	_, _ = bw.Write(head[:len(head)-2])
	n := 0
	put := func(e configwire.Entity) error {
		if n > 0 {
			_ = bw.WriteByte(',')
		}
		n++
		return enc.Encode(e)
	}
	for _, e := range c.ents {
		if err := put(e); err != nil {
			return err
		}
	}
	c.subs.each(func(s *Subscription) {
		if err == nil {
			err = put(subscriptionEntity(s))
		}
	})
	if err != nil {
		return err
	}
	_, _ = bw.WriteString("]}\n")
	return bw.Flush() // a failed write is sticky in bufio.Writer and surfaces here
}

// subscriptionEntity is s as management would send it, with the properties a Builder reads.
func subscriptionEntity(s *Subscription) configwire.Entity {
	props, _ := json.Marshal(struct {
		Scope     string `json:"scope"`
		State     string `json:"state"`
		OwnerID   string `json:"ownerId"`
		StartDate string `json:"startDate"`
	}{"/" + s.Scope, s.State, s.OwnerID, s.StartDate.UTC().Format(time.RFC3339)})
	e := configwire.Entity{Kind: configwire.KindSubscription, Name: s.Name, Properties: props}
	for _, h := range s.hashes {
		e.KeyHashes = append(e.KeyHashes, hex.EncodeToString(h[:]))
	}
	return e
}

// Empty returns a Config serving nothing at revision rev (the service was deleted) and resets
// the Builder, so the next snapshot starts afresh.
func (b *Builder) Empty(rev int64) *Config {
	*b = Builder{env: b.env}
	return &Config{Revision: rev}
}
