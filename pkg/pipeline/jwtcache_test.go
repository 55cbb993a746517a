package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/pipeline/expr"
)

// A token verified once is still checked for its lifetime, audience and claims on every
// later use: only its decoding and signature are remembered.
func TestValidateJWTRememberedTokenIsCheckedEachTime(t *testing.T) {
	t.Parallel()
	p := compileInbound(t, testEnv(), strings.Replace(jwtPolicy, "%KEY%", hsKeyB64, 1))
	tok := hs256(t, hsKey, "", with(goodClaims(), "nbf", testNow.Add(30*time.Second).Unix(), "exp", testNow.Add(time.Minute).Unix()))
	run := func(now time.Time) *Response {
		req := testRequest()
		req.Now = now
		req.Header.Set("Authorization", "Bearer "+tok)
		return p.Run(context.Background(), req)
	}
	for i := range 2 {
		if got := run(testNow.Add(31 * time.Second)); got != nil {
			t.Fatalf("use %d: Run = %+v, want the token accepted", i+1, got)
		}
	}
	// Remembered, yet refused before its nbf and after its exp.
	want := jwtDenied("TokenNotYetValid", "Lifetime validation failed. The token is not yet valid. Access denied.")
	if diff := cmp.Diff(want, run(testNow)); diff != "" {
		t.Fatalf("before nbf: Run mismatch (-want +got):\n%s", diff)
	}
	want = jwtDenied("TokenExpired", "Lifetime validation failed. The token is expired. Access denied.")
	if diff := cmp.Diff(want, run(testNow.Add(2*time.Minute))); diff != "" {
		t.Fatalf("after exp: Run mismatch (-want +got):\n%s", diff)
	}
	// The same claims with a tampered signature are another text: verified afresh, refused.
	forged := tok[:strings.LastIndexByte(tok, '.')+1] + "AAAA" + tok[strings.LastIndexByte(tok, '.')+5:]
	req := testRequest()
	req.Header.Set("Authorization", "Bearer "+forged)
	want = jwtDenied("TokenSignatureInvalid", "Signature validation failed. Access denied.")
	if diff := cmp.Diff(want, p.Run(context.Background(), req)); diff != "" {
		t.Fatalf("forged: Run mismatch (-want +got):\n%s", diff)
	}
}

func TestVerifiedTokensBounded(t *testing.T) {
	t.Parallel()
	var v verifiedTokens
	now := testNow
	for i := range maxVerifiedTokens + 50 {
		exp := now.Add(time.Hour)
		if i%2 == 0 {
			exp = now.Add(time.Second)
		}
		v.put(&expr.Jwt{Raw: fmt.Sprint("tok", i), Claims: map[string]any{"exp": float64(exp.Unix())}}, now)
	}
	if n := len(v.entries); n > maxVerifiedTokens {
		t.Fatalf("%d entries, want at most %d", n, maxVerifiedTokens)
	}
	last := fmt.Sprint("tok", maxVerifiedTokens+49)
	if v.get(last, now) == nil {
		t.Fatalf("the newest token is not remembered")
	}
	if v.get(last, now.Add(verifiedTokenTTL+time.Second)) != nil {
		t.Fatalf("a token is remembered past verifiedTokenTTL")
	}
	v.put(&expr.Jwt{Raw: "expired", Claims: map[string]any{"exp": float64(now.Add(-time.Second).Unix())}}, now)
	if v.get("expired", now) != nil {
		t.Fatalf("an expired token is remembered")
	}
}

// Handshakes on one API share the step and its remembered tokens.
func TestValidateJWTRememberedTokenConcurrentUse(t *testing.T) {
	t.Parallel()
	p := compileInbound(t, testEnv(), strings.Replace(jwtPolicy, "%KEY%", hsKeyB64, 1))
	toks := []string{hs256(t, hsKey, "", goodClaims()), hs256(t, hsKey, "", with(goodClaims(), "sub", "bob"))}
	errs := make(chan string, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				tok := toks[(g+i)%len(toks)]
				req := testRequest()
				req.Header.Set("Authorization", "Bearer "+tok)
				if r := p.Run(context.Background(), req); r != nil {
					errs <- fmt.Sprintf("Run = %+v", r)
					return
				}
				if j, _ := req.Variables["jwt"].(*expr.Jwt); j == nil || j.Raw != tok {
					errs <- "variable jwt is not the request's token"
					return
				}
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}
