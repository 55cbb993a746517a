package odata_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/odata"
)

// apiFields is how a store would expose an APIs table: plain columns, JSON properties and a
// JSON boolean that is false when missing.
var apiFields = map[string]odata.Field{
	"name":        {SQL: "r.name", Type: odata.TypeString},
	"displayName": {SQL: "r.properties->>'displayName'", Type: odata.TypeString},
	"description": {SQL: "r.properties->>'description'", Type: odata.TypeString},
	"serviceUrl":  {SQL: "r.properties->>'serviceUrl'", Type: odata.TypeString},
	"path":        {SQL: "r.properties->>'path'", Type: odata.TypeString},
	"isCurrent":   {SQL: "COALESCE((r.properties->>'isCurrent')::boolean, false)", Type: odata.TypeBool},
	"state":       {SQL: "r.state", Type: odata.TypeString, Ops: []odata.Op{odata.OpEq}},
	"revision":    {SQL: "r.revision", Type: odata.TypeNumber},
}

const supported = "description, displayName, isCurrent, name, path, revision, serviceUrl, state"

var sqlTests = []struct {
	name     string
	filter   string
	argStart int
	wantSQL  string
	wantArgs []any
}{
	{"no filter", "", 1, "TRUE", nil},
	{"eq", "name eq 'echo'", 1, "r.name = $1", []any{"echo"}},
	{"field names ignore case", "DISPLAYNAME eq 'Echo'", 1, "(r.properties->>'displayName') = $1", []any{"Echo"}},
	{"ne is true for NULL", "description ne 'x'", 1, "(r.properties->>'description') IS DISTINCT FROM $1", []any{"x"}},
	{"ordering", "name gt 'a' and name ge 'b' and name lt 'c' and name le 'd'", 1,
		"(r.name > $1 AND r.name >= $2 AND r.name < $3 AND r.name <= $4)", []any{"a", "b", "c", "d"}},
	{"argStart", "name eq 'a' or path eq 'b'", 3, "(r.name = $3 OR (r.properties->>'path') = $4)", []any{"a", "b"}},
	{"eq null", "description eq null", 1, "(r.properties->>'description') IS NULL", nil},
	{"ne null", "description ne null", 1, "(r.properties->>'description') IS NOT NULL", nil},
	{"bool", "isCurrent eq true", 1, "(COALESCE((r.properties->>'isCurrent')::boolean, false)) = $1", []any{true}},
	{"bool ne", "iscurrent ne false", 1,
		"(COALESCE((r.properties->>'isCurrent')::boolean, false)) IS DISTINCT FROM $1", []any{false}},
	{"number", "revision ge -1.5e2", 1, "r.revision >= $1::numeric", []any{"-1.5e2"}},
	{"contains", "contains(name, 'ws')", 1, "r.name ILIKE $1", []any{"%ws%"}},
	{"substringof", "substringof('ws', name)", 1, "r.name ILIKE $1", []any{"%ws%"}},
	{"startswith", "startswith(path, 'chat')", 1, "(r.properties->>'path') ILIKE $1", []any{"chat%"}},
	{"endswith", "endswith(serviceUrl, '/hub')", 1, "(r.properties->>'serviceUrl') ILIKE $1", []any{"%/hub"}},
	{"LIKE metacharacters are escaped", `contains(name, '50%_off\now')`, 1, "r.name ILIKE $1", []any{`%50\%\_off\\now%`}},
	{"not", "not contains(name, 'x')", 1, "NOT COALESCE(r.name ILIKE $1, false)", []any{"%x%"}},
	{"precedence", "not (name eq 'a' or name eq 'b') and state eq 'active'", 1,
		"(NOT COALESCE((r.name = $1 OR r.name = $2), false) AND r.state = $3)", []any{"a", "b", "active"}},
	{"injection stays in the parameter", "name eq 'x'' OR 1=1 --'", 1, "r.name = $1", []any{"x' OR 1=1 --"}},
	{"quote in pattern", "contains(name, ''')--')", 1, "r.name ILIKE $1", []any{"%')--%"}},
}

func TestToSQL(t *testing.T) {
	t.Parallel()
	for _, tc := range sqlTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := odata.Parse(tc.filter)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.filter, err)
			}
			sql, args, err := odata.ToSQL(e, apiFields, tc.argStart)
			if err != nil {
				t.Fatalf("ToSQL(%q): %v", tc.filter, err)
			}
			if sql != tc.wantSQL {
				t.Errorf("ToSQL(%q) SQL\n got: %s\nwant: %s", tc.filter, sql, tc.wantSQL)
			}
			if diff := cmp.Diff(tc.wantArgs, args); diff != "" {
				t.Errorf("ToSQL(%q) args mismatch (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

var sqlErrorTests = []struct {
	name   string
	filter string
	want   *odata.Error
}{
	{"unknown field", "foo eq 'x'", &odata.Error{Pos: 0,
		Msg: "field 'foo' is not supported in $filter; supported: " + supported}},
	{"unknown field in a function", "contains(owner, 'x')", &odata.Error{Pos: 9,
		Msg: "field 'owner' is not supported in $filter; supported: " + supported}},
	{"datetime on a string field", "name eq datetime'2026-11-24'", &odata.Error{Pos: 8,
		Msg: "field 'name' is a string and cannot be compared with a datetime value"}},
	{"operator not allowed", "state ne 'active'", &odata.Error{Pos: 0,
		Msg: "operator 'ne' is not supported for field 'state'; supported: eq"}},
	{"function not allowed", "substringof('act', state)", &odata.Error{Pos: 19,
		Msg: "function 'substringof' is not supported for field 'state'; supported: eq"}},
	{"ordering a boolean", "isCurrent gt false", &odata.Error{Pos: 0,
		Msg: "operator 'gt' is not supported for field 'isCurrent'; supported: eq, ne"}},
	{"function on a boolean", "contains(isCurrent, 'tr')", &odata.Error{Pos: 9,
		Msg: "function 'contains' is not supported for field 'isCurrent'; supported: eq, ne"}},
	{"function on a number", "startswith(revision, '1')", &odata.Error{Pos: 11,
		Msg: "function 'startswith' is not supported for field 'revision'; supported: eq, ne, gt, ge, lt, le"}},
	{"string for a boolean", "isCurrent eq 'true'", &odata.Error{Pos: 13,
		Msg: "field 'isCurrent' is a boolean and cannot be compared with a string value"}},
	{"number for a string", "name eq 1", &odata.Error{Pos: 8,
		Msg: "field 'name' is a string and cannot be compared with a number value"}},
	{"boolean for a number", "revision eq true", &odata.Error{Pos: 12,
		Msg: "field 'revision' is a number and cannot be compared with a boolean value"}},
	{"ordering null", "description gt null", &odata.Error{Pos: 15,
		Msg: "null can only be compared with eq or ne, not 'gt'"}},
	{"error deep in the tree", "name eq 'a' and (path eq 'b' or not bogus eq 1)", &odata.Error{Pos: 36,
		Msg: "field 'bogus' is not supported in $filter; supported: " + supported}},
}

func TestToSQLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range sqlErrorTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := odata.Parse(tc.filter)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.filter, err)
			}
			sql, args, err := odata.ToSQL(e, apiFields, 1)
			if err == nil {
				t.Fatalf("ToSQL(%q) = %q, %v; want error %v", tc.filter, sql, args, tc.want)
			}
			var ferr *odata.Error
			if !errors.As(err, &ferr) {
				t.Fatalf("ToSQL(%q) error %v (%T) is not an *odata.Error", tc.filter, err, err)
			}
			if diff := cmp.Diff(tc.want, ferr); diff != "" {
				t.Errorf("ToSQL(%q) error mismatch (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

// TestToSQLCallerMistakes checks that a malformed field map or tree is reported as the
// caller's error, not as an *odata.Error a client would be shown.
func TestToSQLCallerMistakes(t *testing.T) {
	t.Parallel()
	eq := &odata.Compare{Field: odata.Ident{Name: "name"}, Op: odata.OpEq, Value: odata.Value{Kind: odata.KindString, Text: "x"}}
	tests := []struct {
		name     string
		e        odata.Expr
		fields   map[string]odata.Field
		argStart int
	}{
		{"argStart zero", eq, apiFields, 0},
		{"empty SQL", eq, map[string]odata.Field{"name": {Type: odata.TypeString}}, 1},
		{"no type", eq, map[string]odata.Field{"name": {SQL: "r.name"}}, 1},
		{"function on a boolean field", eq, map[string]odata.Field{"b": {SQL: "r.b", Type: odata.TypeBool,
			Ops: []odata.Op{odata.OpContains}}}, 1},
		{"ordering on a boolean field", eq, map[string]odata.Field{"b": {SQL: "r.b", Type: odata.TypeBool,
			Ops: []odata.Op{odata.OpLt}}}, 1},
		{"names differing in case", eq, map[string]odata.Field{
			"name": {SQL: "r.name", Type: odata.TypeString}, "Name": {SQL: "r.name", Type: odata.TypeString}}, 1},
		{"empty and", &odata.And{}, apiFields, 1},
		{"nil term", &odata.Or{Terms: []odata.Expr{eq, nil}}, apiFields, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sql, _, err := odata.ToSQL(tc.e, tc.fields, tc.argStart)
			if err == nil {
				t.Fatalf("ToSQL = %q, want an error", sql)
			}
			var ferr *odata.Error
			if errors.As(err, &ferr) {
				t.Errorf("ToSQL error %v is an *odata.Error; want a plain error", err)
			}
		})
	}
}
