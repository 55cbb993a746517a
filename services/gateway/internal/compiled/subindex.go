package compiled

const subShards = 256

// subIndex maps key hashes to subscriptions. It is copy-on-write by shard: a change copies
// one shard (1/256 of the keys), so updates cost little even with a million subscriptions,
// and a published index is never modified.
type subIndex struct {
	shards [subShards]map[[32]byte]*Subscription
	n      int
}

func (x *subIndex) get(h [32]byte) *Subscription {
	if x == nil {
		return nil
	}
	return x.shards[h[0]][h]
}

func (x *subIndex) len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// edit returns a copy of x that shares every shard; writes go through editor, which copies a
// shard the first time it touches it.
func (x *subIndex) edit() *subEditor {
	e := &subEditor{next: &subIndex{}}
	if x != nil {
		*e.next = *x
	}
	return e
}

type subEditor struct {
	next   *subIndex
	copied [subShards]bool
}

func (e *subEditor) shard(h [32]byte) map[[32]byte]*Subscription {
	i := h[0]
	if !e.copied[i] {
		old := e.next.shards[i]
		m := make(map[[32]byte]*Subscription, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		e.next.shards[i] = m
		e.copied[i] = true
	}
	return e.next.shards[i]
}

func (e *subEditor) put(s *Subscription) {
	for _, h := range s.hashes {
		m := e.shard(h)
		if _, ok := m[h]; !ok {
			e.next.n++
		}
		m[h] = s
	}
}

func (e *subEditor) remove(s *Subscription) {
	for _, h := range s.hashes {
		m := e.shard(h)
		if cur, ok := m[h]; ok && cur == s {
			delete(m, h)
			e.next.n--
		}
	}
}

func (e *subEditor) done() *subIndex { return e.next }
