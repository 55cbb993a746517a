package compiled

// subIndex maps key hashes to subscriptions. It is a persistent two-level radix on the first
// two bytes of the hash: a change copies the 256-pointer top level, one 256-pointer middle
// node and one small leaf per key it touches, so it costs a few microseconds even with a
// million subscriptions, and a published index is never modified.
type subIndex struct {
	top [256]*subMid
	n   int
}

type subMid [256]subLeaf

type subLeaf map[[32]byte]*Subscription

func (x *subIndex) get(h [32]byte) *Subscription {
	if x == nil {
		return nil
	}
	m := x.top[h[0]]
	if m == nil {
		return nil
	}
	return m[h[1]][h]
}

func (x *subIndex) len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// edit returns an editor of a copy of x that shares every node with x; the editor copies a
// node the first time it writes to it.
func (x *subIndex) edit() *subEditor {
	e := &subEditor{next: &subIndex{}, leaves: map[uint16]bool{}}
	if x != nil {
		*e.next = *x
	}
	return e
}

type subEditor struct {
	next   *subIndex
	mids   [256]bool       // top-level slots whose middle node is the editor's own
	leaves map[uint16]bool // leaves (h[0]<<8 | h[1]) that are the editor's own
}

// leaf returns the editor's own, writable leaf for h.
func (e *subEditor) leaf(h [32]byte) subLeaf {
	m := e.next.top[h[0]]
	if !e.mids[h[0]] {
		cp := &subMid{}
		if m != nil {
			*cp = *m
		}
		m, e.next.top[h[0]], e.mids[h[0]] = cp, cp, true
	}
	k := uint16(h[0])<<8 | uint16(h[1])
	if !e.leaves[k] {
		old := m[h[1]]
		l := make(subLeaf, len(old)+1)
		for hk, s := range old {
			l[hk] = s
		}
		m[h[1]], e.leaves[k] = l, true
	}
	return m[h[1]]
}

func (e *subEditor) put(s *Subscription) {
	for _, h := range s.hashes {
		l := e.leaf(h)
		if _, ok := l[h]; !ok {
			e.next.n++
		}
		l[h] = s
	}
}

func (e *subEditor) remove(s *Subscription) {
	for _, h := range s.hashes {
		if e.next.get(h) != s {
			continue
		}
		delete(e.leaf(h), h)
		e.next.n--
	}
}

func (e *subEditor) done() *subIndex { return e.next }
