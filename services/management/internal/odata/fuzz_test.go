package odata_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/odata"
)

var (
	placeholder = regexp.MustCompile(`\$([0-9]+)`)
	// sqlWords are the words ToSQL writes itself; with them and the field expressions
	// removed, only punctuation, operators and placeholder numbers may remain.
	sqlWords = regexp.MustCompile(`\b(NOT|COALESCE|false|AND|OR|IS|DISTINCT|FROM|NULL|ILIKE|numeric)\b`)
	sqlRest  = regexp.MustCompile(`^[ ()$0-9=<>:,]*$`)
)

// FuzzParse checks that no filter makes Parse or ToSQL panic, that their failures are
// *odata.Error, that the SQL numbers one placeholder per argument in order, and that
// String renders a tree that parses back to itself. Run it with
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 30s ./internal/odata
func FuzzParse(f *testing.F) {
	for _, tc := range parseTests {
		f.Add(tc.filter)
	}
	for _, tc := range parseErrorTests {
		f.Add(tc.filter)
	}
	for _, tc := range sqlTests {
		f.Add(tc.filter)
	}
	for _, tc := range sqlErrorTests {
		f.Add(tc.filter)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		e, err := odata.Parse(filter)
		if err != nil {
			checkError(t, "Parse", filter, err)
			return
		}
		if e == nil {
			if strings.TrimSpace(filter) != "" {
				t.Fatalf("Parse(%q) = nil, nil for a filter that is not blank", filter)
			}
			return
		}

		sql, args, err := odata.ToSQL(e, apiFields, 1)
		if err != nil {
			checkError(t, "ToSQL", filter, err)
		} else {
			checkSQL(t, filter, sql, args)
		}

		canon := e.String()
		again, err := odata.Parse(canon)
		if err != nil {
			var perr *odata.Error
			// Canonical form may add parentheses and blanks, and so cross a limit.
			if errors.As(err, &perr) && (strings.Contains(perr.Msg, "longer than") || strings.Contains(perr.Msg, "nested deeper")) {
				return
			}
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", filter, canon, err)
		}
		if diff := cmp.Diff(e, again, ignorePos); diff != "" {
			t.Fatalf("Parse(%q).String() = %q parses differently (-first +again):\n%s", filter, canon, diff)
		}
	})
}

func checkError(t *testing.T, fn, filter string, err error) {
	t.Helper()
	var perr *odata.Error
	if !errors.As(err, &perr) {
		t.Fatalf("%s(%q) error %v (%T) is not an *odata.Error", fn, filter, err, err)
	}
	if perr.Pos < 0 || perr.Pos > len(filter) || perr.Msg == "" {
		t.Fatalf("%s(%q) error %+v: position outside the filter or no message", fn, filter, perr)
	}
	if !utf8.ValidString(perr.Msg) {
		t.Fatalf("%s(%q) error message %q is not valid UTF-8", fn, filter, perr.Msg)
	}
}

func checkSQL(t *testing.T, filter, sql string, args []any) {
	t.Helper()
	marks := placeholder.FindAllStringSubmatch(sql, -1)
	if len(marks) != len(args) {
		t.Fatalf("ToSQL(%q) = %q with %d placeholders and %d args", filter, sql, len(marks), len(args))
	}
	for i, m := range marks {
		if m[1] != strconv.Itoa(i+1) {
			t.Fatalf("ToSQL(%q) = %q: placeholder %d is $%s", filter, sql, i+1, m[1])
		}
	}
	for _, a := range args {
		if s, ok := a.(string); ok && (!utf8.ValidString(s) || strings.ContainsRune(s, 0)) {
			t.Fatalf("ToSQL(%q): argument %q is not text Postgres accepts", filter, s)
		}
	}
	rest := sql
	for _, f := range apiFields {
		rest = strings.ReplaceAll(rest, f.SQL, "")
	}
	if rest = sqlWords.ReplaceAllString(rest, ""); !sqlRest.MatchString(rest) {
		t.Fatalf("ToSQL(%q) = %q: text other than fields, keywords and placeholders: %q", filter, sql, rest)
	}
	if strings.Count(sql, "(") != strings.Count(sql, ")") {
		t.Fatalf("ToSQL(%q) = %q: unbalanced parentheses", filter, sql)
	}
}
