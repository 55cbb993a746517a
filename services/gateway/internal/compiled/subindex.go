package compiled

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
)

// subIndex maps 64-bit hashes to subscriptions: a Config's key index (by the first eight bytes
// of a key's SHA-256 hash, keyHash64) and a Builder's name index (by a hash of the lower-cased
// name).
// Subscriptions whose hashes collide are told apart by what was hashed, which each holds.
//
// It is a persistent two-level radix on the first two bytes of the hash: a change copies the
// 256-pointer top level, one 256-pointer middle node and one small leaf per entry it touches,
// so it costs a few microseconds even with a million subscriptions, and a published index is
// never modified. Leaves are sorted slices of 16-byte entries: two million keys take 32 MB in
// them, in a map of whole hashes five times as much.
type subIndex struct {
	top [256]*subMid
	n   int
}

type subMid [256]*subLeaf

// subLeaf holds the entries of one two-byte prefix, sorted by hash.
type subLeaf []subEntry

type subEntry struct {
	hash uint64
	sub  *Subscription
}

// find returns the position of the entry of hash h whose subscription match accepts, or
// where it would go.
func (l subLeaf) find(h uint64, match func(*Subscription) bool) (int, bool) {
	i, j := 0, len(l) // binary search for the first entry whose hash is not below h
	for i < j {
		m := int(uint(i+j) >> 1)
		if l[m].hash < h {
			i = m + 1
		} else {
			j = m
		}
	}
	for k := i; k < len(l) && l[k].hash == h; k++ {
		if match(l[k].sub) {
			return k, true
		}
	}
	return i, false
}

func (x *subIndex) leaf(h uint64) subLeaf {
	if x == nil || x.top[h>>56] == nil || x.top[h>>56][h>>48&0xff] == nil {
		return nil
	}
	return *x.top[h>>56][h>>48&0xff]
}

func (x *subIndex) get(h uint64, match func(*Subscription) bool) *Subscription {
	l := x.leaf(h)
	if i, ok := l.find(h, match); ok {
		return l[i].sub
	}
	return nil
}

func (x *subIndex) len() int {
	if x == nil {
		return 0
	}
	return x.n
}

// keyHash64 is the hash under which the key index holds key i of a subscription (0 for the
// primary key, 1 for the secondary one) whose hash is k: its first eight bytes with the last
// bit replaced by i, so that each key has an entry of its own even when two keys of one
// subscription share their first eight bytes.
func keyHash64(k [sha256.Size]byte, i int) uint64 {
	return binary.BigEndian.Uint64(k[:8])&^1 | uint64(i)
}

// holdsKey returns a match of the subscriptions whose key i has hash k.
func holdsKey(k [sha256.Size]byte, i int) func(*Subscription) bool {
	return func(s *Subscription) bool { return s.hashes[i] == k }
}

// byKey returns the subscription holding key hash k in a key index.
func (x *subIndex) byKey(k [sha256.Size]byte) *Subscription {
	for i := range maxKeys {
		if s := x.get(keyHash64(k, i), holdsKey(k, i)); s != nil {
			return s
		}
	}
	return nil
}

// eachSub calls yield once for every subscription in a key index, at the entry of the first of
// its keys that leads to it.
func (x *subIndex) eachSub(yield func(*Subscription)) {
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
				for i, k := range e.sub.keyHashes() {
					if x.byKey(k) == e.sub {
						if uint64(i) == e.hash&1 {
							yield(e.sub)
						}
						break
					}
				}
			}
		}
	}
}

// buildSubIndexes indexes subs by name and by key as putSubscription would, added in this
// order: of subscriptions of one name only the last is indexed, and of those holding one key
// the last has it.
func buildSubIndexes(subs []*Subscription, nh nameHasher) (names, keys *subIndex) {
	var dropped map[*Subscription]bool // earlier subscriptions of a name
	names = buildIndex(func(yield func(subEntry)) {
		for _, s := range subs {
			yield(subEntry{hash: nh.hash(s.Name), sub: s})
		}
	}, func(a, b subEntry) bool { return strings.EqualFold(a.sub.Name, b.sub.Name) }, func(e subEntry) {
		if dropped == nil {
			dropped = map[*Subscription]bool{}
		}
		dropped[e.sub] = true
	})
	keys = buildIndex(func(yield func(subEntry)) {
		for _, s := range subs {
			if dropped[s] {
				continue
			}
			for i, k := range s.keyHashes() {
				yield(subEntry{hash: keyHash64(k, i), sub: s})
			}
		}
	}, func(a, b subEntry) bool { return a.sub.hashes[a.hash&1] == b.sub.hashes[b.hash&1] }, func(subEntry) {})
	return names, keys
}

// buildIndex builds an index of the entries that gen yields, calling gen twice: once to count
// the entries of each leaf, then to place them. Of entries whose hashes differ at most in
// their last bit and that same holds to be the same, only the last yielded is kept; drop is
// told of the others.
func buildIndex(gen func(yield func(subEntry)), same func(a, b subEntry) bool, drop func(subEntry)) *subIndex {
	counts := make([]int, 1<<16) // entries by leaf (the first two bytes of their hash)
	n := 0
	gen(func(e subEntry) {
		counts[e.hash>>48]++
		n++
	})
	// One array holds every leaf, each at its offset, filled in the order of gen.
	all := make([]subEntry, n)
	next := make([]int, len(counts))
	for k, off := 1, 0; k < len(counts); k++ {
		off += counts[k-1]
		next[k] = off
	}
	gen(func(e subEntry) {
		all[next[e.hash>>48]] = e
		next[e.hash>>48]++
	})
	x := &subIndex{}
	headers := make([]subLeaf, 0, min(n, len(counts)))
	for k, c := range counts {
		if c == 0 {
			continue
		}
		l := all[next[k]-c : next[k] : next[k]]
		// In the order of gen among entries the last bit of whose hashes aside are equal, to
		// keep the last of the same ones; then sorted by their whole hash.
		slices.SortStableFunc(l, func(a, b subEntry) int { return cmp.Compare(a.hash>>1, b.hash>>1) })
		kept := l[:0]
		for i, e := range l {
			later := false
			for j := i + 1; j < len(l) && l[j].hash>>1 == e.hash>>1; j++ {
				if same(e, l[j]) {
					later = true
					break
				}
			}
			if later {
				drop(e)
				continue
			}
			kept = append(kept, e)
		}
		clear(l[len(kept):])
		l = kept
		slices.SortFunc(l, func(a, b subEntry) int { return cmp.Compare(a.hash, b.hash) })
		if len(l) == 0 {
			continue
		}
		if x.top[k>>8] == nil {
			x.top[k>>8] = &subMid{}
		}
		headers = append(headers, l)
		x.top[k>>8][k&0xff] = &headers[len(headers)-1]
		x.n += len(l)
	}
	return x
}

// nameHasher hashes lower-cased subscription names for a name index, with a seed of its own
// so that names cannot be chosen to collide.
type nameHasher struct{ seed maphash.Seed }

func newNameHasher() nameHasher { return nameHasher{seed: maphash.MakeSeed()} }

func (nh nameHasher) hash(name string) uint64 { return maphash.String(nh.seed, strings.ToLower(name)) }

// lookup returns the hash of name and a match of the subscription named so.
func (nh nameHasher) lookup(name string) (uint64, func(*Subscription) bool) {
	return nh.hash(name), func(s *Subscription) bool { return strings.EqualFold(s.Name, name) }
}

// edit returns an editor of a copy of x that shares every node with x; the editor copies a
// node the first time it writes to it.
func (x *subIndex) edit() *subEditor {
	e := &subEditor{next: &subIndex{}}
	if x != nil {
		*e.next = *x
	}
	return e
}

type subEditor struct {
	next   *subIndex
	mids   [256]bool    // top-level slots whose middle node is the editor's own
	leaves [1024]uint64 // bit h>>48: leaves that are the editor's own
}

// leaf returns the editor's own, writable leaf for h.
func (e *subEditor) leaf(h uint64) *subLeaf {
	t := h >> 56
	m := e.next.top[t]
	if !e.mids[t] {
		cp := &subMid{}
		if m != nil {
			*cp = *m
		}
		m, e.next.top[t], e.mids[t] = cp, cp, true
	}
	k := h >> 48
	if e.leaves[k/64]&(1<<(k%64)) == 0 {
		cp := &subLeaf{}
		if old := m[k&0xff]; old != nil {
			*cp = slices.Clone(*old)
		}
		m[k&0xff] = cp
		e.leaves[k/64] |= 1 << (k % 64)
	}
	return m[k&0xff]
}

// put makes s the subscription of hash h in place of the one match accepts, if any, and
// returns that one.
func (e *subEditor) put(h uint64, s *Subscription, match func(*Subscription) bool) (old *Subscription) {
	l := e.leaf(h)
	i, ok := l.find(h, match)
	if ok {
		old, (*l)[i].sub = (*l)[i].sub, s
		return old
	}
	*l = slices.Insert(*l, i, subEntry{hash: h, sub: s})
	e.next.n++
	return nil
}

// remove removes the entry of s under hash h, if there is one.
func (e *subEditor) remove(h uint64, s *Subscription) {
	is := func(x *Subscription) bool { return x == s }
	if _, ok := e.next.leaf(h).find(h, is); !ok {
		return
	}
	l := e.leaf(h)
	i, _ := l.find(h, is)
	*l = slices.Delete(*l, i, i+1)
	e.next.n--
}

// putKeys indexes s under its keys, in place of the subscriptions holding them.
func (e *subEditor) putKeys(s *Subscription) {
	for i, k := range s.keyHashes() {
		for j := range maxKeys {
			if t := e.next.get(keyHash64(k, j), holdsKey(k, j)); t != nil {
				e.remove(keyHash64(k, j), t)
			}
		}
		e.put(keyHash64(k, i), s, func(t *Subscription) bool { return t == s })
	}
}

// removeKeys removes s from under its keys, where another has not taken its place.
func (e *subEditor) removeKeys(s *Subscription) {
	for i, k := range s.keyHashes() {
		e.remove(keyHash64(k, i), s)
	}
}

// done returns the edited index. Leaves that grew by appending are cut to their length, so
// that a Load does not leave up to half of their room unused.
func (e *subEditor) done() *subIndex {
	for w, word := range e.leaves {
		for word != 0 {
			k := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if l := e.next.top[k>>8][k&0xff]; cap(*l) > len(*l) {
				*l = append(subLeaf(nil), *l...)
			}
		}
	}
	return e.next
}
