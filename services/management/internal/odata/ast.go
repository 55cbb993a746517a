// Package odata parses the OData $filter subset that APIM list operations accept and
// translates it into a parameterised SQL condition.
//
// Grammar (keywords, function names and true/false/null are case-insensitive):
//
//	filter     = or
//	or         = and { "or" and }
//	and        = unary { "and" unary }
//	unary      = "not" unary | primary
//	primary    = "(" or ")" | comparison | call [ ("eq" | "ne") ("true" | "false") ]
//	comparison = field ("eq" | "ne" | "gt" | "ge" | "lt" | "le") value
//	call       = ("contains" | "startswith" | "endswith") "(" field "," string ")"
//	           | "substringof" "(" string "," field ")"
//	value      = string | number | datetime | "true" | "false" | "null"
//	string     = "'" { any character except "'" | "''" } "'"
//	datetime   = ("datetime" | "datetimeoffset") string   (no blank before the quote)
//	number     = [ "-" ] digits [ "." digits ] [ ("e" | "E") [ "+" | "-" ] digits ]
//	field      = name { "/" name }                         ("properties/displayName")
//	name       = letter-or-"_" { letter-or-digit-or-"_" }
//
// Unlike strict OData, "not" applies to the whole comparison after it: "not name eq 'a'" means
// "not (name eq 'a')". Parse rejects filters longer than MaxLength bytes or nested deeper than
// MaxDepth.
//
// Semantics of the SQL that ToSQL produces, which follows OData where APIM documents nothing:
//   - eq and ne on strings are exact, case-sensitive comparisons; gt, ge, lt and le order strings
//     by the collation of the caller's SQL expression.
//   - contains, substringof, startswith and endswith are case-insensitive, as in APIM.
//   - A field whose value is SQL NULL equals only null: "x eq 'a'" is false for it and
//     "x ne 'a'" is true; ordering comparisons and functions on it are false.
//   - Field names are matched case-insensitively, as in APIM. A field marked Property is also
//     named with the ARM body's prefix, "properties/displayName", as Azure PowerShell and the
//     developer portal write it; any other path is an unknown field.
package odata

import (
	"strconv"
	"strings"
)

// Expr is a node of a parsed filter: *And, *Or, *Not, *Compare or *Call. The set is closed.
type Expr interface {
	// Pos returns the byte offset in the filter at which the expression starts.
	Pos() int
	// String renders the expression in canonical filter syntax that Parse accepts, adding
	// parentheses only where precedence needs them.
	String() string
	expr()
}

// Op is a comparison operator or a string function.
type Op int

// The operators and functions. OpContains stands for both contains and substringof.
const (
	OpEq Op = iota + 1
	OpNe
	OpGt
	OpGe
	OpLt
	OpLe
	OpContains
	OpStartsWith
	OpEndsWith
)

var opNames = [...]string{
	OpEq: "eq", OpNe: "ne", OpGt: "gt", OpGe: "ge", OpLt: "lt", OpLe: "le",
	OpContains: "contains", OpStartsWith: "startswith", OpEndsWith: "endswith",
}

// String returns the operator's filter keyword, e.g. "eq" or "contains".
func (o Op) String() string {
	if o < OpEq || o > OpEndsWith {
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
	return opNames[o]
}

// Kind is the kind of a literal value.
type Kind int

// The literal kinds.
const (
	KindString Kind = iota + 1
	KindNumber
	KindBool
	KindNull
	// KindDateTime is a typed literal, datetime'…' or datetimeoffset'…'; Text holds what is
	// between the quotes, unchecked. No SQL field type takes it: callers that understand
	// times, such as usage reports, read it from the tree.
	KindDateTime
)

// String returns the kind's name as used in error messages.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindNumber:
		return "number"
	case KindBool:
		return "boolean"
	case KindNull:
		return "null"
	case KindDateTime:
		return "datetime"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Ident is a field name as written in the filter.
type Ident struct {
	Name string
	At   int // byte offset in the filter
}

// Value is a literal. Text holds the unescaped contents of a string or a date-time, the
// digits of a number exactly as written (always a valid decimal that Postgres' numeric
// accepts), or "true", "false" or "null" in lower case.
type Value struct {
	Kind Kind
	Text string
	At   int // byte offset in the filter
}

// String renders the value as a filter literal.
func (v Value) String() string {
	switch v.Kind {
	case KindString:
		return "'" + strings.ReplaceAll(v.Text, "'", "''") + "'"
	case KindDateTime:
		return "datetime'" + strings.ReplaceAll(v.Text, "'", "''") + "'"
	}
	return v.Text
}

// And is true when every term is. It has at least two terms.
type And struct{ Terms []Expr }

// Or is true when any term is. It has at least two terms.
type Or struct{ Terms []Expr }

// Not negates X.
type Not struct {
	X  Expr
	At int // byte offset of the "not" keyword
}

// Compare is "Field Op Value" with Op one of OpEq … OpLe.
type Compare struct {
	Field Ident
	Op    Op
	Value Value
}

// Call is a string function: Field contains, starts with or ends with Value, a KindString.
// Name is the function as written, lower-cased ("substringof" or "contains" for OpContains).
type Call struct {
	Name  string
	Op    Op
	Field Ident
	Value Value
	At    int // byte offset of the function name
}

func (*And) expr()     {}
func (*Or) expr()      {}
func (*Not) expr()     {}
func (*Compare) expr() {}
func (*Call) expr()    {}

// Pos implements Expr; an And without terms reports 0.
func (e *And) Pos() int { return firstPos(e.Terms) }

// Pos implements Expr; an Or without terms reports 0.
func (e *Or) Pos() int { return firstPos(e.Terms) }

// Pos implements Expr.
func (e *Not) Pos() int { return e.At }

// Pos implements Expr.
func (e *Compare) Pos() int { return e.Field.At }

// Pos implements Expr.
func (e *Call) Pos() int { return e.At }

func firstPos(terms []Expr) int {
	if len(terms) == 0 || terms[0] == nil {
		return 0
	}
	return terms[0].Pos()
}

// String implements Expr.
func (e *And) String() string { return join(e.Terms, " and ", true) }

// String implements Expr.
func (e *Or) String() string { return join(e.Terms, " or ", false) }

// String implements Expr.
func (e *Not) String() string {
	switch e.X.(type) {
	case *Not, *Call:
		return "not " + render(e.X)
	}
	return "not (" + render(e.X) + ")"
}

// String implements Expr.
func (e *Compare) String() string {
	return e.Field.Name + " " + e.Op.String() + " " + e.Value.String()
}

// String implements Expr.
func (e *Call) String() string {
	if e.Name == "substringof" {
		return "substringof(" + e.Value.String() + ", " + e.Field.Name + ")"
	}
	name := e.Name
	if name == "" {
		name = e.Op.String()
	}
	return name + "(" + e.Field.Name + ", " + e.Value.String() + ")"
}

// join renders terms separated by sep. An Or term is always parenthesised (and binds tighter
// than or, and an Or inside an Or came from explicit parentheses); so is an And term when
// parenAnd is set, that is inside an And.
func join(terms []Expr, sep string, parenAnd bool) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteString(sep)
		}
		_, isOr := t.(*Or)
		_, isAnd := t.(*And)
		if isOr || isAnd && parenAnd {
			b.WriteString("(" + render(t) + ")")
		} else {
			b.WriteString(render(t))
		}
	}
	return b.String()
}

func render(e Expr) string {
	if e == nil {
		return "<nil>"
	}
	return e.String()
}
