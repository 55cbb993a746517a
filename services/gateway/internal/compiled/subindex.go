package compiled

import (
	"bytes"
	"slices"
)

// subIndex maps key hashes to subscriptions. It is a persistent two-level radix on the first
// two bytes of the hash: a change copies the 256-pointer top level, one 256-pointer middle
// node and one small leaf per key it touches, so it costs a few microseconds even with a
// million subscriptions, and a published index is never modified. Leaves are sorted slices,
// not maps: two million keys take 80 MB in them, in maps twice as much.
type subIndex struct {
	top [256]*subMid
	n   int
}

type subMid [256]*subLeaf

// subLeaf holds the keys of one two-byte prefix, sorted by hash.
type subLeaf []subEntry

type subEntry struct {
	hash [32]byte
	sub  *Subscription
}

func (l subLeaf) find(h [32]byte) (int, bool) {
	return slices.BinarySearchFunc(l, h, func(e subEntry, h [32]byte) int { return bytes.Compare(e.hash[:], h[:]) })
}

func (x *subIndex) get(h [32]byte) *Subscription {
	if x == nil {
		return nil
	}
	m := x.top[h[0]]
	if m == nil {
		return nil
	}
	l := m[h[1]]
	if l == nil {
		return nil
	}
	if i, ok := l.find(h); ok {
		return (*l)[i].sub
	}
	return nil
}

// each calls yield once for every subscription in x, at the first of its key hashes that
// leads to it.
func (x *subIndex) each(yield func(*Subscription)) {
	if x == nil {
		return
	}
	for _, m := range x.top {
		if m == nil {
			continue
		}
		for _, l := range m {
			if l == nil {
				continue
			}
			for _, e := range *l {
				for _, h := range e.sub.hashes {
					if x.get(h) == e.sub {
						if h == e.hash {
							yield(e.sub)
						}
						break
					}
				}
			}
		}
	}
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
func (e *subEditor) leaf(h [32]byte) *subLeaf {
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
		cp := &subLeaf{}
		if old := m[h[1]]; old != nil {
			*cp = slices.Clone(*old)
		}
		m[h[1]], e.leaves[k] = cp, true
	}
	return m[h[1]]
}

func (e *subEditor) put(s *Subscription) {
	for _, h := range s.hashes {
		l := e.leaf(h)
		i, ok := l.find(h)
		if ok {
			(*l)[i].sub = s
			continue
		}
		*l = slices.Insert(*l, i, subEntry{hash: h, sub: s})
		e.next.n++
	}
}

func (e *subEditor) remove(s *Subscription) {
	for _, h := range s.hashes {
		if e.next.get(h) != s {
			continue
		}
		l := e.leaf(h)
		i, _ := l.find(h)
		*l = slices.Delete(*l, i, i+1)
		e.next.n--
	}
}

// done returns the edited index. Leaves that grew by appending are cut to their length, so
// that a Load does not leave up to half of their room unused.
func (e *subEditor) done() *subIndex {
	for k := range e.leaves {
		if l := e.next.top[k>>8][k&0xff]; cap(*l) > len(*l) {
			*l = append(subLeaf(nil), *l...)
		}
	}
	return e.next
}
