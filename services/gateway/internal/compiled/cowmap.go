package compiled

import "iter"

const cowShards = 64

// cowMap is a copy-on-write map from strings, sharded by a hash of the key: an edit copies
// the 64-pointer shard table and only the shards it writes, so replacing one API among
// thousands costs little. A published cowMap is never modified. A nil *cowMap is empty.
type cowMap[V any] struct {
	shards [cowShards]map[string]V
	n      int
}

// shardOf is FNV-1a: keys come from management, and a skewed shard costs only speed.
func shardOf(k string) int {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return int(h % cowShards)
}

func (m *cowMap[V]) get(k string) V {
	if m == nil {
		var zero V
		return zero
	}
	return m.shards[shardOf(k)][k]
}

func (m *cowMap[V]) len() int {
	if m == nil {
		return 0
	}
	return m.n
}

// all yields every entry, in no particular order.
func (m *cowMap[V]) all() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		if m == nil {
			return
		}
		for _, s := range m.shards {
			for k, v := range s {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// edit returns an editor of a copy of m that shares every shard with m.
func (m *cowMap[V]) edit() *cowEditor[V] {
	e := &cowEditor[V]{next: &cowMap[V]{}}
	if m != nil {
		*e.next = *m
	}
	return e
}

type cowEditor[V any] struct {
	next  *cowMap[V]
	owned [cowShards]bool
}

func (e *cowEditor[V]) get(k string) V { return e.next.get(k) }

func (e *cowEditor[V]) shard(k string) map[string]V {
	i := shardOf(k)
	if !e.owned[i] {
		old := e.next.shards[i]
		s := make(map[string]V, len(old)+1)
		for ok, ov := range old {
			s[ok] = ov
		}
		e.next.shards[i], e.owned[i] = s, true
	}
	return e.next.shards[i]
}

func (e *cowEditor[V]) set(k string, v V) {
	s := e.shard(k)
	if _, ok := s[k]; !ok {
		e.next.n++
	}
	s[k] = v
}

func (e *cowEditor[V]) delete(k string) {
	if _, ok := e.next.shards[shardOf(k)][k]; !ok {
		return
	}
	delete(e.shard(k), k)
	e.next.n--
}

func (e *cowEditor[V]) done() *cowMap[V] { return e.next }
