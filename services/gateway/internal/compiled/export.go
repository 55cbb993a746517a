package compiled

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"gatehouse.dev/pkg/configwire"
)

// Export returns the Builder's current state as a snapshot, for the on-disk cache.
func (b *Builder) Export() configwire.Snapshot {
	snap := configwire.Snapshot{ServiceID: b.serviceID, Service: b.service, Gateway: b.gateway, Revision: b.revision,
		Entities: make([]configwire.Entity, 0, len(b.ents)+len(b.subs))}
	for _, e := range b.ents {
		snap.Entities = append(snap.Entities, e)
	}
	for _, s := range b.subs {
		props, _ := json.Marshal(map[string]string{"scope": "/" + s.Scope, "state": s.State, "ownerId": s.OwnerID,
			"startDate": s.StartDate.UTC().Format(time.RFC3339)})
		e := configwire.Entity{Kind: configwire.KindSubscription, Name: s.Name, Properties: props}
		for _, h := range s.hashes {
			e.KeyHashes = append(e.KeyHashes, hex.EncodeToString(h[:]))
		}
		snap.Entities = append(snap.Entities, e)
	}
	return snap
}

// Empty returns a Config serving nothing at revision rev (the service was deleted) and resets
// the Builder, so the next snapshot starts afresh.
func (b *Builder) Empty(rev int64) *Config {
	*b = Builder{env: b.env}
	return &Config{Revision: rev}
}
