package reports_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/reports"
)

func TestParseLogFilter(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, filter string
		want         reports.Filter
		wantErr      bool
	}{
		{name: "empty", filter: "", want: reports.Filter{}},
		{name: "close code and node, no time", filter: "closeCode eq 1008 and nodeId eq 'n-1'",
			want: reports.Filter{CloseCode: 1008, CloseCodeSet: true, Node: "n-1"}},
		{name: "time range and api", filter: "timestamp ge datetime'2026-11-24' and timestamp lt datetime'2026-11-25' and apiId eq 'echo'",
			want: reports.Filter{From: day, To: day.Add(24 * time.Hour), ToExclusive: true, API: "echo", APISet: true}},
		{name: "close code not a code", filter: "closeCode eq 99", wantErr: true},
		{name: "close code quoted", filter: "closeCode eq '1008'", wantErr: true},
		{name: "close code range", filter: "closeCode ge 1000", wantErr: true},
		{name: "node with ne", filter: "nodeId ne 'a'", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := reports.ParseLogFilter(tc.filter)
			if tc.wantErr {
				var re *reports.Error
				if !errors.As(err, &re) || re.Field != "$filter" {
					t.Fatalf("ParseLogFilter(%q) = %+v, %v; want a $filter *Error", tc.filter, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseLogFilter(%q) (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, filter string
		want         reports.Filter
		wantErr      bool
	}{
		{name: "APIM's example", filter: "timestamp ge datetime'2026-11-24T00:00:00' and timestamp le datetime'2026-11-25T00:00:00'",
			want: reports.Filter{From: day, To: day.Add(24 * time.Hour)}},
		{name: "keywords any case, exclusive bounds, offsets", filter: "Timestamp GT datetime'2026-11-24T01:00:00+01:00' AND timestamp lt '2026-11-25'",
			want: reports.Filter{From: day, FromExclusive: true, To: day.Add(24 * time.Hour), ToExclusive: true}},
		{name: "api and subscription ids", filter: "timestamp ge datetime'2026-11-24T00:00:00' and apiId eq '/apis/echo' and subscriptionId eq 'alice''s'",
			want: reports.Filter{From: day, API: "echo", APISet: true, Subscription: "alice's", SubscriptionSet: true}},
		{name: "full ARM subscription id", filter: "timestamp ge datetime'2026-11-24' and subscriptionId eq '/subscriptions/x/resourceGroups/rg/providers/Microsoft.ApiManagement/service/s/subscriptions/bob'",
			want: reports.Filter{From: day, Subscription: "bob", SubscriptionSet: true}},
		{name: "node", filter: "timestamp ge datetime'2026-11-24' and nodeId eq 'n-1'", want: reports.Filter{From: day, Node: "n-1"}},
		{name: "close code is the log's", filter: "timestamp ge datetime'2026-11-24' and closeCode eq 1008", wantErr: true},
		{name: "empty", filter: " ", wantErr: true},
		{name: "no lower bound", filter: "timestamp le datetime'2026-11-24T00:00:00'", wantErr: true},
		{name: "bad time", filter: "timestamp ge datetime'yesterday'", wantErr: true},
		{name: "unknown field", filter: "timestamp ge datetime'2026-11-24' and country eq 'NL'", wantErr: true},
		{name: "or", filter: "timestamp ge datetime'2026-11-24' or apiId eq 'a'", wantErr: true},
		{name: "unterminated", filter: "timestamp ge datetime'2026-11-24", wantErr: true},
		{name: "unquoted value", filter: "timestamp ge 2026", wantErr: true},
		{name: "dangling and", filter: "timestamp ge datetime'2026-11-24' and", wantErr: true},
		{name: "api with ge", filter: "timestamp ge datetime'2026-11-24' and apiId ge 'a'", wantErr: true},
		{name: "parenthesised terms", filter: "(timestamp ge datetime'2026-11-24') and (apiId eq 'a' and subscriptionId eq 'b')",
			want: reports.Filter{From: day, API: "a", APISet: true, Subscription: "b", SubscriptionSet: true}},
		{name: "odd character", filter: "timestamp ge datetime'2026-11-24' and apiId = 'a'", wantErr: true},
		{name: "not", filter: "timestamp ge datetime'2026-11-24' and not apiId eq 'a'", wantErr: true},
		{name: "function", filter: "timestamp ge datetime'2026-11-24' and contains(apiId, 'a')", wantErr: true},
		{name: "datetime id", filter: "timestamp ge datetime'2026-11-24' and apiId eq datetime'a'", wantErr: true},
		{name: "too long", filter: "timestamp ge datetime'2026-11-24' and apiId eq '" + strings.Repeat("a", reports.MaxFilterLength) + "'", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := reports.ParseFilter(tc.filter)
			if tc.wantErr {
				var re *reports.Error
				if !errors.As(err, &re) || re.Field != "$filter" {
					t.Fatalf("ParseFilter(%q) = %+v, %v; want a $filter *Error", tc.filter, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		text string
	}{
		{"PT1M", time.Minute, "PT1M"},
		{"PT15M", 15 * time.Minute, "PT15M"},
		{"pt1h", time.Hour, "PT1H"},
		{"PT90M", 90 * time.Minute, "PT1H30M"},
		{"PT120S", 2 * time.Minute, "PT2M"},
		{"P1D", 24 * time.Hour, "P1D"},
		{"P1DT6H", 30 * time.Hour, "P1DT6H"},
		{"PT30S", 0, ""},
		{"PT61S", 0, ""},
		{"P", 0, ""},
		{"PT", 0, ""},
		{"P400D", 0, ""},
		{"15m", 0, ""},
		{"", 0, ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := reports.ParseInterval(tc.in)
			if tc.want == 0 {
				if err == nil {
					t.Errorf("ParseInterval(%q) = %s, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseInterval(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
			if s := reports.FormatInterval(got); s != tc.text {
				t.Errorf("FormatInterval(%s) = %q, want %q", got, s, tc.text)
			}
		})
	}
}

func TestParseOrderBy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		field string
		desc  bool
		bad   bool
	}{
		{"", "", false, false},
		{"callCountTotal desc", "callcounttotal", true, false},
		{"timestamp", "timestamp", false, false},
		{"bytesIn ASC", "bytesin", false, false},
		{"drop table", "", false, true},
		{"name desc extra", "", false, true},
		{"name sideways", "", false, true},
	} {
		field, desc, err := reports.ParseOrderBy(tc.in)
		if (err != nil) != tc.bad || field != tc.field || desc != tc.desc {
			t.Errorf("ParseOrderBy(%q) = %q, %v, %v", tc.in, field, desc, err)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"timestamp ge datetime'2026-11-24T00:00:00' and timestamp le datetime'2026-11-25T00:00:00'",
		"apiId eq 'a''b'", "x'", "'", "datetime'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := reports.ParseFilter(s)
		if err != nil {
			var re *reports.Error
			if !errors.As(err, &re) {
				t.Fatalf("ParseFilter(%q) error %T is not *Error", s, err)
			}
			return
		}
		if got.From.IsZero() {
			t.Fatalf("ParseFilter(%q) accepted a filter without a lower bound", s)
		}
	})
}
