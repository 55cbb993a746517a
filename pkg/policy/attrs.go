package policy

import (
	"strconv"
	"strings"
)

// attrs reads the attributes of one element for a decoder: it remembers which names the
// decoder asked for, so that done can refuse the others, and keeps the first problem found.
type attrs struct {
	e     *Element
	known []string
	err   error
}

func readAttrs(e *Element) *attrs {
	return &attrs{e: e}
}

func (a *attrs) fail(format string, args ...any) {
	if a.err == nil {
		a.err = a.e.Errorf(format, args...)
	}
}

func (a *attrs) get(name string) (string, bool) {
	a.known = append(a.known, name)
	return a.e.Attr(name)
}

// meta reads the id attribute every policy element accepts.
func (a *attrs) meta() Meta {
	return Meta{Pos: a.e.Pos, ID: a.str("id", false)}
}

// str reads a string attribute. A required one must be present and not blank; an empty
// optional one reads as absent ("").
func (a *attrs) str(name string, required bool) string {
	v, ok := a.get(name)
	if required && (!ok || trimSpace(v) == "") {
		a.fail("The attribute '%s' is required.", name)
	}
	return v
}

// present reads a required attribute that may be empty.
func (a *attrs) present(name string) string {
	v, ok := a.get(name)
	if !ok {
		a.fail("The attribute '%s' is required.", name)
	}
	return v
}

// integer reads an integer attribute in [lo, hi], trimmed. Policy expressions are accepted
// when expr is true, {{named value}} references always; neither is checked further.
func (a *attrs) integer(name string, required bool, lo, hi int, expr bool) string {
	v := trimSpace(a.str(name, required))
	if v == "" || !a.literal(name, v, expr) {
		return v
	}
	if n, err := strconv.Atoi(v); err != nil || n < lo || n > hi {
		if hi == maxInt {
			a.fail("The attribute '%s' must be an integer not less than %d.", name, lo)
		} else {
			a.fail("The attribute '%s' must be an integer between %d and %d.", name, lo, hi)
		}
	}
	return v
}

// boolean reads a "true"/"false" attribute (any case), trimmed; expressions are accepted.
func (a *attrs) boolean(name string, required bool) string {
	return a.enum(name, required, "true", "false")
}

// enum reads an attribute that must be one of values (any case), trimmed; expressions are
// accepted.
func (a *attrs) enum(name string, required bool, values ...string) string {
	v := trimSpace(a.str(name, required))
	if v == "" || !a.literal(name, v, true) {
		return v
	}
	for _, want := range values {
		if strings.EqualFold(v, want) {
			return v
		}
	}
	a.fail("The attribute '%s' must be one of: %s.", name, strings.Join(values, ", "))
	return v
}

// literal reports whether v is a literal value to check. It records an error when v is an
// expression and expressions are not allowed.
func (a *attrs) literal(name, v string, expr bool) bool {
	if IsExpression(v) {
		if !expr {
			a.fail("Policy expressions are not allowed in the attribute '%s'.", name)
		}
		return false
	}
	return !hasNamedValue(v)
}

// done returns the first problem found, or an error for an attribute the decoder did not ask
// for.
func (a *attrs) done() error {
	if a.err != nil {
		return a.err
	}
	for _, at := range a.e.Attrs {
		known := false
		for _, k := range a.known {
			if at.Name == k {
				known = true
				break
			}
		}
		if !known {
			return a.e.Errorf("The attribute '%s' is not allowed.", at.Name)
		}
	}
	return nil
}

const maxInt = int(^uint(0) >> 1)

// trimSpace trims XML whitespace (space, tab, CR, LF), leaving other Unicode spaces alone.
func trimSpace(s string) string {
	return strings.Trim(s, " \t\r\n")
}

// elementLeaf decodes a leaf child such as <value>: no attributes, text only, trimmed.
func elementLeaf(e *Element) (string, error) {
	if err := readAttrs(e).done(); err != nil {
		return "", err
	}
	return e.textOnly()
}

// unexpected is the error for a child element a decoder does not know.
func unexpected(parent, child *Element) error {
	return child.Errorf("The element is not allowed in '%s'.", parent.Name)
}
