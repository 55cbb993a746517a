package wsbench

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Sample is one figure of one run against one target.
type Sample struct {
	Scenario string // "a" … "i"
	Figure   string // msgs_per_s, p99_ms, …
	Label    string // how the report names the figure
	Target   string // direct, gatehouse, gatehouse-goroutine, nginx, haproxy
	Run      int
	Value    float64
}

// ReadSamples reads tab-separated samples: scenario, figure, label, target, run, value.
func ReadSamples(r io.Reader) ([]Sample, error) {
	var out []Sample
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("line %d: want 6 tab-separated fields, got %d", n, len(f))
		}
		run, err := strconv.Atoi(f[4])
		if err != nil {
			return nil, fmt.Errorf("line %d: run %q: %w", n, f[4], err)
		}
		v, err := strconv.ParseFloat(f[5], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value %q: %w", n, f[5], err)
		}
		out = append(out, Sample{Scenario: f[0], Figure: f[1], Label: f[2], Target: f[3], Run: run, Value: v})
	}
	return out, s.Err()
}

// Median returns the median of vs (the mean of the middle two for an even count).
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// figure is one figure's samples: by target, the value of each run.
type figure struct {
	label string
	runs  map[string]map[int]float64
}

// median returns the median over the runs of target t, and whether it has any.
func (f *figure) median(t string) (float64, bool) {
	runs := f.runs[t]
	if len(runs) == 0 {
		return 0, false
	}
	vs := make([]float64, 0, len(runs))
	for _, v := range runs {
		vs = append(vs, v)
	}
	return Median(vs), true
}

// ratio returns the median over runs of t's value divided by base's in the same run: both
// were measured minutes apart on the same machine, which a ratio of medians taken from
// different runs of a noisy machine would not respect.
func (f *figure) ratio(t, base string) (float64, bool) {
	var rs []float64
	for run, v := range f.runs[t] {
		if b, ok := f.runs[base][run]; ok && b != 0 {
			rs = append(rs, v/b)
		}
	}
	if len(rs) == 0 {
		return 0, false
	}
	return Median(rs), true
}

// Goal is one of the targets for the gateway (issues 7 and 16), checked on the figure's
// medians of target "gatehouse".
type Goal struct {
	Scenario, Figure string
	Text             string
	// Met reports whether the gateway meets the goal, and false for ok when a figure it
	// needs is missing.
	Met func(f *figure) (met, ok bool)
}

// vsNginx is a goal relative to nginx in the same runs: at least factor times it (higher
// is better) or at most factor times it.
func vsNginx(factor float64, higher bool) func(*figure) (bool, bool) {
	return func(f *figure) (bool, bool) {
		r, ok := f.ratio("gatehouse", "nginx")
		if higher {
			return ok && r >= factor, ok
		}
		return ok && r <= factor, ok
	}
}

func atMost(limit float64) func(*figure) (bool, bool) {
	return func(f *figure) (bool, bool) {
		g, ok := f.median("gatehouse")
		return ok && g <= limit, ok
	}
}

// Goals are issue 16's targets: issue 7's for (a) to (e), revised, and new ones for (f) to (i).
var Goals = []Goal{
	{"a", "msgs_per_s", "(a) messages/s ≥ 1.1× nginx", vsNginx(1.1, true)},
	{"a", "p99_ms", "(a) p99 round trip ≤ nginx's", vsNginx(1, false)},
	{"b", "per_s", "(b) checked handshakes/s ≥ 1.0× nginx (unchecked)", vsNginx(1, true)},
	{"c", "kib_per_conn", "(c) ≤ 6.5 KiB per idle proxied connection", atMost(6.5)},
	{"d", "mb_per_s", "(d) 1 MiB messages: MB/s ≥ 1.4× nginx", vsNginx(1.4, true)},
	{"e", "p99_ms", "(e) write → enforced on 5 nodes: p99 ≤ 100 ms", atMost(100)},
	{"f", "msgs_per_s", "(f) wss messages/s ≥ 1.0× nginx", vsNginx(1, true)},
	{"g", "per_s", "(g) REST requests/s with key + operation match ≥ 0.8× nginx", vsNginx(0.8, true)},
	{"h", "change_p99_ms", "(h) full node: change → enforced p99 ≤ 100 ms", atMost(100)},
	{"h", "revoke_p99_ms", "(h) full node: revocation → closed p99 ≤ 100 ms", atMost(100)},
	{"i", "change_p99_ms", "(i) fleet: change → enforced on every node p99 ≤ 100 ms", atMost(100)},
	{"i", "revoke_p99_ms", "(i) fleet: revocation → closed on every node p99 ≤ 100 ms", atMost(100)},
}

type figureKey struct{ scenario, figure string }

// WriteReport writes the markdown tables of samples: each figure's median per target with
// its ratio to nginx and to direct (medians of the ratios within each run), the goals, and
// every run's value.
func WriteReport(w io.Writer, samples []Sample) error {
	var keys []figureKey
	var targets []string
	figures := map[figureKey]*figure{}
	for _, s := range samples {
		k := figureKey{s.Scenario, s.Figure}
		f := figures[k]
		if f == nil {
			f = &figure{label: s.Label, runs: map[string]map[int]float64{}}
			figures[k] = f
			keys = append(keys, k)
		}
		if !slices.Contains(targets, s.Target) {
			targets = append(targets, s.Target)
		}
		if f.runs[s.Target] == nil {
			f.runs[s.Target] = map[int]float64{}
		}
		f.runs[s.Target][s.Run] = s.Value
	}
	slices.SortStableFunc(keys, func(a, b figureKey) int { return strings.Compare(a.scenario, b.scenario) })
	slices.SortStableFunc(targets, func(a, b string) int { return targetRank(a) - targetRank(b) })

	fmt.Fprintf(w, "| figure (median of runs; ratios: median of the runs' ratios) | %s |\n", strings.Join(mapNames(targets), " | "))
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---|", len(targets)))
	for _, k := range keys {
		f := figures[k]
		cells := make([]string, len(targets))
		for i, t := range targets {
			v, ok := f.median(t)
			if !ok {
				cells[i] = "—"
				continue
			}
			cell := formatValue(v)
			var ratios []string
			for _, base := range []string{"nginx", "direct"} {
				if r, ok := f.ratio(t, base); ok && t != base {
					ratios = append(ratios, formatRatio(r)+" "+base)
				}
			}
			if len(ratios) > 0 {
				cell += " (" + strings.Join(ratios, ", ") + ")"
			}
			cells[i] = cell
		}
		fmt.Fprintf(w, "| %s | %s |\n", f.label, strings.Join(cells, " | "))
	}

	fmt.Fprintf(w, "\n| goal (issue 16) | Gatehouse | met |\n|---|---|---|\n")
	for _, g := range Goals {
		f, ok := figures[figureKey{g.Scenario, g.Figure}]
		if !ok {
			continue
		}
		met, ok := g.Met(f)
		verdict := map[bool]string{true: "yes", false: "**no**"}[met]
		if !ok {
			verdict = "not measured"
		}
		gv := "—"
		if v, ok := f.median("gatehouse"); ok {
			gv = formatValue(v)
			if r, ok := f.ratio("gatehouse", "nginx"); ok {
				gv += " (" + formatRatio(r) + " nginx)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", g.Text, gv, verdict)
	}

	fmt.Fprintf(w, "\n| figure | target | every run |\n|---|---|---|\n")
	for _, k := range keys {
		f := figures[k]
		for _, t := range targets {
			runs := f.runs[t]
			if len(runs) == 0 {
				continue
			}
			order := slices.Sorted(maps.Keys(runs))
			parts := make([]string, len(order))
			for i, run := range order {
				parts[i] = formatValue(runs[run])
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", f.label, targetName(t), strings.Join(parts, ", "))
		}
	}
	return nil
}

var targetOrder = []string{"direct", "gatehouse", "gatehouse-goroutine", "nginx", "haproxy"}

func targetRank(t string) int {
	if i := slices.Index(targetOrder, t); i >= 0 {
		return i
	}
	return len(targetOrder)
}

func targetName(t string) string {
	switch t {
	case "direct":
		return "direct (no proxy)"
	case "gatehouse":
		return "Gatehouse"
	case "gatehouse-goroutine":
		return "Gatehouse (goroutine engine)"
	case "haproxy":
		return "HAProxy"
	}
	return t
}

func mapNames(ts []string) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = targetName(t)
	}
	return out
}

// formatValue prints v with digits that matter: thousands separated above 1,000.
func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		s := strconv.FormatInt(int64(math.Round(v)), 10)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func formatRatio(r float64) string { return strconv.FormatFloat(r, 'f', 2, 64) + "×" }
