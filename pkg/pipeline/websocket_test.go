package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/policy"
)

func TestSessionLimitsCompose(t *testing.T) {
	t.Parallel()
	in := func(policies string) string { return "<policies><inbound>" + policies + "</inbound></policies>" }
	ids := ScopeIDs{Product: "starter", API: "echo", Operation: "echo/onHandshake"}
	tests := []struct {
		name                        string
		global, product, api, opDoc string
		namedValues                 map[string]string
		want                        SessionLimits
	}{
		{
			name: "one scope, every attribute",
			api: in(`<websocket-limits max-message-size="1048576" idle-timeout="300" ping-interval="30" max-lifetime="86400" close-on-token-expiry="TRUE">
				<message-rate direction="Inbound" messages="50" period="1" burst="100" />
				<message-rate direction="outbound" per="Subscription" messages="600" period="60" />
				<message-rate messages="5" period="3600" />
			</websocket-limits>`),
			want: SessionLimits{
				MaxMessageBytes: 1048576, IdleTimeout: 300 * time.Second, PingInterval: 30 * time.Second,
				MaxLifetime: 24 * time.Hour, CloseOnTokenExpiry: true,
				Rates: []MessageRate{
					{Direction: DirectionInbound, Messages: 50, Period: time.Second, Burst: 100, Policy: "api:echo/inbound[1]/message-rate[1]"},
					{Direction: DirectionOutbound, PerSubscription: true, Messages: 600, Period: time.Minute, Burst: 600, Policy: "api:echo/inbound[1]/message-rate[2]"},
					{Direction: DirectionBoth, Messages: 5, Period: time.Hour, Burst: 5, Policy: "api:echo/inbound[1]/message-rate[3]"},
				},
			},
		},
		{
			name: "no websocket-limits",
			api:  in(`<set-variable name="a" value="b" />`),
			want: SessionLimits{},
		},
		{
			name: "zero turns a limit off",
			api:  in(`<websocket-limits max-message-size="0" idle-timeout="0" ping-interval="0" max-lifetime="0" close-on-token-expiry="false" />`),
			want: SessionLimits{MaxMessageBytes: NoLimit, IdleTimeout: NoLimit, PingInterval: NoLimit, MaxLifetime: NoLimit},
		},
		{
			name:    "the narrowest scope that sets an attribute wins, rates accumulate broadest first",
			global:  in(`<websocket-limits max-message-size="100" idle-timeout="10" ping-interval="30" close-on-token-expiry="true"><message-rate messages="1" period="1" /></websocket-limits>`),
			product: in(`<base /><websocket-limits idle-timeout="20" max-lifetime="60"><message-rate messages="2" period="1" /></websocket-limits>`),
			api:     in(`<base /><websocket-limits ping-interval="0" />`),
			opDoc:   in(`<base /><websocket-limits max-lifetime="120"><message-rate messages="4" period="1" /></websocket-limits>`),
			want: SessionLimits{
				MaxMessageBytes: 100, IdleTimeout: 20 * time.Second, PingInterval: NoLimit, MaxLifetime: 2 * time.Minute, CloseOnTokenExpiry: true,
				Rates: []MessageRate{
					{Messages: 1, Period: time.Second, Burst: 1, Policy: "global/inbound[1]/message-rate[1]"},
					{Messages: 2, Period: time.Second, Burst: 2, Policy: "product:starter/inbound[2]/message-rate[1]"},
					{Messages: 4, Period: time.Second, Burst: 4, Policy: "operation:echo/onHandshake/inbound[2]/message-rate[1]"},
				},
			},
		},
		{
			name:   "the position of base does not matter",
			global: in(`<websocket-limits idle-timeout="10" max-lifetime="10" />`),
			opDoc:  in(`<websocket-limits idle-timeout="99" /><base />`),
			want:   SessionLimits{IdleTimeout: 99 * time.Second, MaxLifetime: 10 * time.Second},
		},
		{
			name:   "a narrower false beats a broader true",
			global: in(`<websocket-limits close-on-token-expiry="true" />`),
			api:    in(`<base /><websocket-limits close-on-token-expiry="false" />`),
			want:   SessionLimits{},
		},
		{
			name:   "validate-utf8 and allow-compression: the narrowest scope wins",
			global: in(`<websocket-limits validate-utf8="true" allow-compression="true" />`),
			api:    in(`<base /><websocket-limits allow-compression="false" />`),
			want:   SessionLimits{ValidateUTF8: true},
		},
		{
			name:   "a section without base does not inherit limits",
			global: in(`<websocket-limits idle-timeout="10"><message-rate messages="1" period="1" /></websocket-limits>`),
			api:    in(`<websocket-limits ping-interval="15" />`),
			want:   SessionLimits{PingInterval: 15 * time.Second},
		},
		{
			name:    "a scope without inbound inherits its parent's",
			product: in(`<websocket-limits max-message-size="64" />`),
			api:     "<policies><outbound /></policies>",
			want:    SessionLimits{MaxMessageBytes: 64},
		},
		{
			name:        "named values and the id attribute",
			api:         in(`<websocket-limits id="session" max-message-size="{{max}}" close-on-token-expiry="{{expire}}"><message-rate direction="{{dir}}" per="subscription" messages="{{n}}" period="10" /></websocket-limits>`),
			namedValues: map[string]string{"max": "65536", "expire": "true", "dir": "inbound", "n": "30"},
			want: SessionLimits{
				MaxMessageBytes: 65536, CloseOnTokenExpiry: true,
				Rates: []MessageRate{{Direction: DirectionInbound, PerSubscription: true, Messages: 30, Period: 10 * time.Second, Burst: 30, Policy: "api:echo/id:session/message-rate[1]"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parse := func(s string) *policy.Document {
				if s == "" {
					return nil
				}
				d, err := policy.Parse(s, policy.FormatXML)
				if err != nil {
					t.Fatalf("parse %s: %v", s, err)
				}
				return d
			}
			env := testEnv()
			env.NamedValues = tc.namedValues
			p, err := Compile(Scopes{Global: parse(tc.global), Product: parse(tc.product), API: parse(tc.api), Operation: parse(tc.opDoc), IDs: ids}, env)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			req := testRequest()
			if r := p.Run(context.Background(), req); r != nil {
				t.Fatalf("Run = %+v", r)
			}
			if diff := cmp.Diff(tc.want, req.Session); diff != "" {
				t.Errorf("Session (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRunFillsSession checks that Run sets Session on every request, next to the other
// policies, and replaces whatever the request held.
func TestRunFillsSession(t *testing.T) {
	t.Parallel()
	p := compileInbound(t, testEnv(), `
		<set-header name="X-Before" exists-action="override"><value>1</value></set-header>
		<websocket-limits max-message-size="4096" idle-timeout="60" />
		<check-header name="X-Required" failed-check-httpcode="401" failed-check-error-message="no" ignore-case="true" />`)
	want := SessionLimits{MaxMessageBytes: 4096, IdleTimeout: time.Minute}

	req := testRequest()
	req.Header.Set("X-Required", "yes")
	req.Session = SessionLimits{MaxLifetime: time.Hour, CloseOnTokenExpiry: true}
	if r := p.Run(context.Background(), req); r != nil {
		t.Fatalf("Run = %+v", r)
	}
	if diff := cmp.Diff(want, req.Session); diff != "" {
		t.Errorf("Session (-want +got):\n%s", diff)
	}
	if req.Header.Get("X-Before") != "1" {
		t.Error("the policy before websocket-limits did not run")
	}

	// websocket-limits does not stop later checks.
	if r := p.Run(context.Background(), testRequest()); r == nil || r.Status != 401 {
		t.Errorf("Run without X-Required = %+v, want the check-header's 401", r)
	}

	// A pipeline without the policy leaves the limits unset.
	plain := compileInbound(t, testEnv(), `<set-variable name="a" value="b" />`)
	req = testRequest()
	req.Session = want
	plain.Run(context.Background(), req)
	if diff := cmp.Diff(SessionLimits{}, req.Session); diff != "" {
		t.Errorf("Session without websocket-limits (-want +got):\n%s", diff)
	}
}

func TestSessionLimitsCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		policies    string
		namedValues map[string]string
		want        []string
	}{
		{
			name:        "named value breaks ping-interval",
			policies:    `<websocket-limits ping-interval="{{ping}}" />`,
			namedValues: map[string]string{"ping": "2"},
			want:        []string{"api:echo inbound: websocket-limits on line 3, column 1", "after named value substitution", "'ping-interval' must be 0 or an integer not less than 5"},
		},
		{
			name:        "named value makes burst smaller than messages",
			policies:    "<set-variable name=\"a\" value=\"b\" />\n<websocket-limits><message-rate messages=\"{{n}}\" period=\"1\" burst=\"10\" /></websocket-limits>",
			namedValues: map[string]string{"n": "20"},
			want:        []string{"websocket-limits on line 4, column 1", "'burst' must not be less than 'messages'"},
		},
		{
			name:        "named value is an expression",
			policies:    `<websocket-limits idle-timeout="{{idle}}" />`,
			namedValues: map[string]string{"idle": "@(60)"},
			want:        []string{"Policy expressions are not allowed in the attribute 'idle-timeout'"},
		},
		{
			name:     "missing named value",
			policies: `<websocket-limits max-lifetime="{{life}}" />`,
			want:     []string{"websocket-limits on line 3", "named value 'life' is not defined"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testEnv()
			env.NamedValues = tc.namedValues
			_, err := Compile(Scopes{API: inboundDoc(t, tc.policies), IDs: ScopeIDs{API: "echo"}}, env)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error = %v, want *CompileError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSessionLimitsResolve(t *testing.T) {
	t.Parallel()
	defaults := SessionLimits{MaxMessageBytes: 1 << 20, IdleTimeout: 5 * time.Minute, PingInterval: 30 * time.Second}
	rates := []MessageRate{{Messages: 1, Period: time.Second, Burst: 1}}
	got := SessionLimits{
		MaxMessageBytes: 4096, IdleTimeout: NoLimit, MaxLifetime: time.Hour,
		CloseOnTokenExpiry: true, Rates: rates,
	}.Resolve(defaults)
	want := SessionLimits{
		MaxMessageBytes: 4096, IdleTimeout: 0, PingInterval: 30 * time.Second, MaxLifetime: time.Hour,
		CloseOnTokenExpiry: true, Rates: rates,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(defaults, SessionLimits{}.Resolve(defaults)); diff != "" {
		t.Errorf("Resolve of unset limits (-want +got):\n%s", diff)
	}
}

func TestDirectionCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d                       Direction
		name                    string
		fromClient, fromBackend bool
	}{
		{DirectionBoth, "both", true, true},
		{DirectionInbound, "inbound", true, false},
		{DirectionOutbound, "outbound", false, true},
	}
	for _, tc := range tests {
		if got := tc.d.String(); got != tc.name {
			t.Errorf("Direction(%d).String() = %q, want %q", tc.d, got, tc.name)
		}
		if got := tc.d.Counts(true); got != tc.fromClient {
			t.Errorf("%s.Counts(from client) = %v, want %v", tc.name, got, tc.fromClient)
		}
		if got := tc.d.Counts(false); got != tc.fromBackend {
			t.Errorf("%s.Counts(from backend) = %v, want %v", tc.name, got, tc.fromBackend)
		}
	}
}

// limiter is what RateLimiter and SharedRateLimiter have in common, to test both alike.
type limiter interface {
	Allow(now time.Time) bool
}

var limiterKinds = []struct {
	name string
	make func(MessageRate) limiter
}{
	{"RateLimiter", func(r MessageRate) limiter { return NewRateLimiter(r) }},
	{"SharedRateLimiter", func(r MessageRate) limiter { return NewSharedRateLimiter(r) }},
}

// allowN sends n messages at now and returns how many l allowed.
func allowN(l limiter, now time.Time, n int) int {
	allowed := 0
	for range n {
		if l.Allow(now) {
			allowed++
		}
	}
	return allowed
}

func TestRateLimiterBurstThenSteady(t *testing.T) {
	t.Parallel()
	for _, kind := range limiterKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			at := func(d time.Duration) time.Time { return t0.Add(d) }
			// 50 messages a second, bursts of 100: one message every 20 ms once the burst is spent.
			l := kind.make(MessageRate{Messages: 50, Period: time.Second, Burst: 100})
			steps := []struct {
				at        time.Duration
				send      int
				wantAllow int
			}{
				{0, 150, 100},                                   // a full bucket gives the burst, no more
				{10 * time.Millisecond, 5, 0},                   // half an interval: nothing yet
				{20 * time.Millisecond, 5, 1},                   // one interval: one message
				{100 * time.Millisecond, 10, 4},                 // four more intervals
				{time.Second + 100*time.Millisecond, 100, 50},   // a second refills 50, the rate
				{10 * time.Second, 1000, 100},                   // a long pause refills up to the burst only
				{10*time.Second + 999*time.Millisecond, 60, 49}, // then the steady rate again
			}
			for _, s := range steps {
				if got := allowN(l, at(s.at), s.send); got != s.wantAllow {
					t.Errorf("at %v: %d of %d allowed, want %d", s.at, got, s.send, s.wantAllow)
				}
			}
		})
	}
}

func TestRateLimiterShapes(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	tests := []struct {
		name      string
		rate      MessageRate
		at        time.Duration
		send      int
		wantFirst int // allowed at t0
		wantLater int // allowed at t0+at
	}{
		{"burst defaults to messages", MessageRate{Messages: 3, Period: time.Second}, time.Second, 10, 3, 3},
		{"rate that does not divide the period", MessageRate{Messages: 3, Period: time.Second, Burst: 3}, 333333333, 10, 3, 1},
		{"one an hour", MessageRate{Messages: 1, Period: time.Hour, Burst: 1}, 59 * time.Minute, 5, 1, 0},
		{"faster than the clock is fine", MessageRate{Messages: 1 << 40, Period: time.Second, Burst: 1 << 40}, time.Nanosecond, 1000, 1000, 1000},
		{"huge burst does not overflow", MessageRate{Messages: 1, Period: time.Hour, Burst: 1 << 62}, time.Hour, 1000, 1000, 1000},
		{"no messages allowed", MessageRate{}, time.Hour, 5, 0, 0},
	}
	for _, tc := range tests {
		for _, kind := range limiterKinds {
			t.Run(tc.name+"/"+kind.name, func(t *testing.T) {
				t.Parallel()
				l := kind.make(tc.rate)
				if got := allowN(l, t0, tc.send); got != tc.wantFirst {
					t.Errorf("at t0: %d of %d allowed, want %d", got, tc.send, tc.wantFirst)
				}
				if got := allowN(l, t0.Add(tc.at), tc.send); got != tc.wantLater {
					t.Errorf("at t0+%v: %d of %d allowed, want %d", tc.at, got, tc.send, tc.wantLater)
				}
			})
		}
	}
}

// TestRateLimiterClock checks that the limiters only care about the distance between the
// times they are given: times far from the limiter's creation, with or without a monotonic
// reading, behave the same.
func TestRateLimiterClock(t *testing.T) {
	t.Parallel()
	for _, kind := range limiterKinds {
		for _, t0 := range []time.Time{testNow, time.Now().Round(0), time.Now().Add(50 * 365 * 24 * time.Hour)} {
			l := kind.make(MessageRate{Messages: 10, Period: time.Second, Burst: 10})
			if got := allowN(l, t0, 20); got != 10 {
				t.Errorf("%s at %v: %d allowed, want the burst of 10", kind.name, t0, got)
			}
			if got := allowN(l, t0.Add(time.Second), 20); got != 10 {
				t.Errorf("%s a second after %v: %d allowed, want 10", kind.name, t0, got)
			}
		}
	}
}

// TestSharedRateLimiterConcurrent has many goroutines, as the connections of one subscription,
// draw from one SharedRateLimiter: together they get exactly the burst, then exactly the
// refill, never more.
func TestSharedRateLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l := NewSharedRateLimiter(MessageRate{Messages: 500, Period: time.Second, Burst: 1000})
	t0 := time.Now()
	const goroutines, each = 16, 200
	round := func(now time.Time) int64 {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-start
				for range each {
					if l.Allow(now) {
						allowed.Add(1)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		return allowed.Load()
	}
	if got := round(t0); got != 1000 {
		t.Errorf("first round: %d allowed, want the burst of 1000", got)
	}
	if got := round(t0.Add(time.Second)); got != 500 {
		t.Errorf("a second later: %d allowed, want the refill of 500", got)
	}
}

// TestRateLimiterPerDirection runs a session's two relaying goroutines, each with its own
// RateLimiter as the type is meant to be used; the race detector checks they share nothing.
func TestRateLimiterPerDirection(t *testing.T) {
	t.Parallel()
	rate := MessageRate{Messages: 100, Period: time.Second, Burst: 100}
	t0 := time.Now()
	var got [2]int
	var wg sync.WaitGroup
	for dir := range got {
		l := NewRateLimiter(rate)
		wg.Go(func() { got[dir] = allowN(l, t0, 300) })
	}
	wg.Wait()
	if got != [2]int{100, 100} {
		t.Errorf("allowed per direction = %v, want 100 each", got)
	}
}

func TestRateLimiterAllocations(t *testing.T) {
	rate := MessageRate{Messages: 1000, Period: time.Second, Burst: 1000}
	now := time.Now()
	for _, kind := range limiterKinds {
		l := kind.make(rate)
		if n := testing.AllocsPerRun(1000, func() { l.Allow(now) }); n != 0 {
			t.Errorf("%s.Allow allocates %v times per call", kind.name, n)
		}
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	rate := MessageRate{Messages: 1 << 40, Period: time.Second, Burst: 1 << 40}
	b.Run("RateLimiter", func(b *testing.B) {
		l := NewRateLimiter(rate)
		now := time.Now()
		for b.Loop() {
			l.Allow(now)
		}
	})
	b.Run("SharedRateLimiter/parallel", func(b *testing.B) {
		l := NewSharedRateLimiter(rate)
		now := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow(now)
			}
		})
	})
}
