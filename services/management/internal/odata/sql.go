package odata

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Type is the type of a filterable field.
type Type int

// The field types.
const (
	TypeString Type = iota + 1
	TypeNumber
	TypeBool
)

// String returns the type's name as used in error messages.
func (t Type) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber:
		return "number"
	case TypeBool:
		return "boolean"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// kind is the literal kind that a field of type t is compared with.
func (t Type) kind() Kind {
	switch t {
	case TypeString:
		return KindString
	case TypeNumber:
		return KindNumber
	case TypeBool:
		return KindBool
	}
	return 0
}

// Field says what a filter field stands for in SQL.
type Field struct {
	// SQL is a trusted SQL expression, chosen by the caller and never taken from a client,
	// that yields the field's value: "r.name", "r.properties->>'displayName'". Its SQL type
	// must suit Type: text or varchar for TypeString, any numeric type for TypeNumber, boolean
	// for TypeBool. A JSON boolean stored as text must be cast by the caller, who also decides
	// what a missing property means:
	// "COALESCE((r.properties->>'isCurrent')::boolean, false)" makes a missing isCurrent match
	// "isCurrent eq false" and never "isCurrent eq null".
	SQL string
	// Type is the type of the literals the field is compared with.
	Type Type
	// Ops lists the operators and functions the field accepts. Nil accepts every one that
	// suits Type: all of them for TypeString, OpEq to OpLe for TypeNumber, OpEq and OpNe for
	// TypeBool. String functions are valid only on TypeString fields.
	Ops []Op
	// Property marks a field that is one of the resource's ARM properties: the filter may
	// name it "properties/<name>" too.
	Property bool
}

// propertiesPrefix is the path that names an ARM property in a filter (Field.Property).
const propertiesPrefix = "properties/"

func (f Field) allowed() []Op {
	if f.Ops != nil {
		return f.Ops
	}
	switch f.Type {
	case TypeString:
		return []Op{OpEq, OpNe, OpGt, OpGe, OpLt, OpLe, OpContains, OpStartsWith, OpEndsWith}
	case TypeNumber:
		return []Op{OpEq, OpNe, OpGt, OpGe, OpLt, OpLe}
	}
	return []Op{OpEq, OpNe}
}

// ToSQL translates a parsed filter into a SQL boolean condition over the caller's fields,
// keyed by field name; the filter names them case-insensitively.
//
// No text from the filter enters the SQL: every literal becomes a positional parameter,
// numbered from argStart up, and args holds their values in order: a string for a string
// field, the number's decimal text (a string, cast to numeric in the SQL) for a number field,
// a bool for a boolean field. null becomes IS NULL or IS NOT NULL. String functions become
// ILIKE with LIKE's default escape character, the backslash; %, _ and \ in the needle are
// escaped in the parameter, so they match themselves.
//
// The condition is true exactly for the rows that match; for the others it is false or NULL,
// so use it in a WHERE clause, alone or and-ed with other conditions, and do not negate it.
// A nil e, the "no filter" of Parse, yields "TRUE" and no args.
//
// Errors caused by the filter (an unknown field, an operator the field does not allow, a
// literal of the wrong type) are *Error, fit for the client; other errors mean the caller's
// fields or e are malformed.
func ToSQL(e Expr, fields map[string]Field, argStart int) (sql string, args []any, err error) {
	if argStart < 1 {
		return "", nil, fmt.Errorf("odata: argStart %d is not a valid parameter number", argStart)
	}
	if e == nil {
		return "TRUE", nil, nil
	}
	t, err := newTranslator(fields, argStart)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	if err := t.expr(&b, e); err != nil {
		return "", nil, err
	}
	return b.String(), t.args, nil
}

type namedField struct {
	name string // as the caller spelt it
	Field
}

type translator struct {
	fields    map[string]namedField // keyed by lower-case name
	supported string                // the field names for error messages
	next      int                   // the next parameter number
	args      []any
}

func newTranslator(fields map[string]Field, argStart int) (*translator, error) {
	t := &translator{fields: make(map[string]namedField, len(fields)), next: argStart}
	names := make([]string, 0, len(fields))
	for name, f := range fields {
		if err := checkField(name, f); err != nil {
			return nil, err
		}
		key := strings.ToLower(name)
		if other, dup := t.fields[key]; dup {
			return nil, fmt.Errorf("odata: fields %q and %q differ only in case", other.name, name)
		}
		t.fields[key] = namedField{name: name, Field: f}
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	t.supported = strings.Join(names, ", ")
	if t.supported == "" {
		t.supported = "none"
	}
	return t, nil
}

func checkField(name string, f Field) error {
	if strings.TrimSpace(f.SQL) == "" {
		return fmt.Errorf("odata: field %q has no SQL expression", name)
	}
	if f.Type.kind() == 0 {
		return fmt.Errorf("odata: field %q has invalid type %v", name, f.Type)
	}
	for _, op := range f.allowed() {
		if op < OpEq || op > OpEndsWith {
			return fmt.Errorf("odata: field %q allows invalid operator %v", name, op)
		}
		if op >= OpContains && f.Type != TypeString {
			return fmt.Errorf("odata: field %q of type %v allows string function %v", name, f.Type, op)
		}
		if op > OpNe && f.Type == TypeBool {
			return fmt.Errorf("odata: boolean field %q allows ordering operator %v", name, op)
		}
	}
	return nil
}

func (t *translator) expr(b *strings.Builder, e Expr) error {
	switch e := e.(type) {
	case *And:
		return t.terms(b, e.Terms, " AND ")
	case *Or:
		return t.terms(b, e.Terms, " OR ")
	case *Not:
		// NOT NULL is NULL, so a NULL from a comparison with a NULL field would survive
		// the negation and drop the row; COALESCE makes the operand two-valued first.
		b.WriteString("NOT COALESCE(")
		if err := t.expr(b, e.X); err != nil {
			return err
		}
		b.WriteString(", false)")
		return nil
	case *Compare:
		return t.compare(b, e)
	case *Call:
		return t.call(b, e)
	case nil:
		return errors.New("odata: nil expression")
	}
	return fmt.Errorf("odata: unknown expression type %T", e)
}

func (t *translator) terms(b *strings.Builder, terms []Expr, sep string) error {
	if len(terms) == 0 {
		return errors.New("odata: and/or without terms")
	}
	if len(terms) == 1 {
		return t.expr(b, terms[0])
	}
	b.WriteByte('(')
	for i, term := range terms {
		if i > 0 {
			b.WriteString(sep)
		}
		if err := t.expr(b, term); err != nil {
			return err
		}
	}
	b.WriteByte(')')
	return nil
}

// lookup finds the field named by id and checks that it accepts op, which the filter spells
// opName.
func (t *translator) lookup(id Ident, op Op, opName string) (namedField, error) {
	key := strings.ToLower(id.Name)
	bare, isProp := strings.CutPrefix(key, propertiesPrefix)
	if isProp {
		key = bare
	}
	f, ok := t.fields[key]
	if !ok || isProp && !f.Property {
		return namedField{}, &Error{Pos: id.At, Msg: "field " + quote(id.Name) +
			" is not supported in $filter; supported: " + t.supported}
	}
	allowed := f.allowed()
	if !slices.Contains(allowed, op) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = a.String()
		}
		what := "operator"
		if op >= OpContains {
			what = "function"
		}
		return namedField{}, &Error{Pos: id.At, Msg: what + " " + quote(opName) + " is not supported for field " +
			quote(id.Name) + "; supported: " + strings.Join(names, ", ")}
	}
	return f, nil
}

var sqlOps = map[Op]string{OpEq: " = ", OpNe: " IS DISTINCT FROM ", OpGt: " > ", OpGe: " >= ", OpLt: " < ", OpLe: " <= "}

func (t *translator) compare(b *strings.Builder, c *Compare) error {
	if _, ok := sqlOps[c.Op]; !ok {
		return fmt.Errorf("odata: invalid comparison operator %v", c.Op)
	}
	f, err := t.lookup(c.Field, c.Op, c.Op.String())
	if err != nil {
		return err
	}
	v := c.Value
	if v.Kind == KindNull {
		switch c.Op {
		case OpEq:
			b.WriteString(operand(f.SQL) + " IS NULL")
			return nil
		case OpNe:
			b.WriteString(operand(f.SQL) + " IS NOT NULL")
			return nil
		}
		return &Error{Pos: v.At, Msg: "null can only be compared with eq or ne, not " + quote(c.Op.String())}
	}
	if v.Kind != f.Type.kind() {
		return &Error{Pos: v.At, Msg: "field " + quote(c.Field.Name) + " is a " + f.Type.String() +
			" and cannot be compared with a " + v.Kind.String() + " value"}
	}
	b.WriteString(operand(f.SQL))
	b.WriteString(sqlOps[c.Op])
	switch v.Kind {
	case KindString:
		t.param(b, v.Text)
	case KindNumber:
		t.param(b, v.Text) // the lexer admits only decimals that numeric accepts
		b.WriteString("::numeric")
	case KindBool:
		t.param(b, v.Text == "true")
	default:
		return fmt.Errorf("odata: invalid literal kind %v", v.Kind)
	}
	return nil
}

func (t *translator) call(b *strings.Builder, c *Call) error {
	var pattern string
	esc := escapeLike(c.Value.Text)
	switch c.Op {
	case OpContains:
		pattern = "%" + esc + "%"
	case OpStartsWith:
		pattern = esc + "%"
	case OpEndsWith:
		pattern = "%" + esc
	default:
		return fmt.Errorf("odata: invalid function operator %v", c.Op)
	}
	name := c.Name
	if name == "" {
		name = c.Op.String()
	}
	if c.Value.Kind != KindString {
		return &Error{Pos: c.Value.At, Msg: "function " + quote(name) + " needs a string value, not a " + c.Value.Kind.String()}
	}
	f, err := t.lookup(c.Field, c.Op, name)
	if err != nil {
		return err
	}
	if f.Type != TypeString {
		return &Error{Pos: c.Field.At, Msg: "function " + quote(name) + " needs a string field; " +
			quote(c.Field.Name) + " is a " + f.Type.String()}
	}
	b.WriteString(operand(f.SQL) + " ILIKE ")
	t.param(b, pattern)
	return nil
}

// param appends the placeholder for the next parameter and records its value.
func (t *translator) param(b *strings.Builder, v any) {
	b.WriteByte('$')
	b.WriteString(strconv.Itoa(t.next))
	t.next++
	t.args = append(t.args, v)
}

// escapeLike makes s match itself literally in a LIKE pattern with the default escape, the
// backslash.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// operand parenthesises a caller's SQL expression unless it is a plain, possibly qualified,
// column name, so that operator precedence inside it cannot bind to the comparison.
func operand(sql string) string {
	for i := 0; i < len(sql); i++ {
		if c := sql[i]; !isIdentPart(c) && c != '.' {
			return "(" + sql + ")"
		}
	}
	return sql
}
