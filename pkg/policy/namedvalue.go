package policy

import "strings"

// NamedValueRefs returns the names referenced as {{name}} in s, in order of first appearance,
// without duplicates. A name is one or more letters, digits, '.', '-' or '_' (the characters
// APIM allows in a named value's name); anything else between the braces is not a reference.
func NamedValueRefs(s string) []string {
	var names []string
	seen := map[string]bool{}
	forEachRef(s, func(_, _ int, name string) bool {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return true
	})
	return names
}

// hasNamedValue reports whether s references at least one named value.
func hasNamedValue(s string) bool {
	found := false
	forEachRef(s, func(_, _ int, _ string) bool {
		found = true
		return false
	})
	return found
}

// ReplaceNamedValues returns s with every {{name}} reference replaced by value(name). The
// replacement is textual and done once: values are not scanned for further references.
func ReplaceNamedValues(s string, value func(name string) string) string {
	var b strings.Builder
	last := 0
	forEachRef(s, func(start, end int, name string) bool {
		b.WriteString(s[last:start])
		b.WriteString(value(name))
		last = end
		return true
	})
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// forEachRef calls fn with the bounds and name of every {{name}} reference in s, until fn
// returns false.
func forEachRef(s string, fn func(start, end int, name string) bool) {
	i := 0
	for {
		k := strings.Index(s[i:], "{{")
		if k < 0 {
			return
		}
		start := i + k
		j := start + 2
		for j < len(s) && isNameChar(s[j]) {
			j++
		}
		if j > start+2 && strings.HasPrefix(s[j:], "}}") {
			if !fn(start, j+2, s[start+2:j]) {
				return
			}
			i = j + 2
			continue
		}
		i = start + 1
	}
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}
