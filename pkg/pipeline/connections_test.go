package pipeline

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLimitConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policies string
		noSub    bool
		want     []ConnectionLimit
	}{
		{"per subscription", `<limit-connections max="3" />`, false,
			[]ConnectionLimit{{Counter: "conn|sub|" + testRequest().Subscription.ID, Max: 3}}},
		{"per subscription without a subscription", `<limit-connections max="3" />`, true, nil},
		{"per key, evicting", `<limit-connections max="2" per="key" counter-key="@(context.Request.IpAddress)" action="evict-oldest" />`, false,
			[]ConnectionLimit{{Counter: "conn|key|" + testRequest().ClientIP.String(), Max: 2, EvictOldest: true}}},
		{"two limits", `<limit-connections max="3" /><limit-connections max="9" per="key" counter-key="all" />`, false,
			[]ConnectionLimit{{Counter: "conn|sub|" + testRequest().Subscription.ID, Max: 3}, {Counter: "conn|key|all", Max: 9}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := compileInbound(t, testEnv(), tc.policies)
			req := testRequest()
			if tc.noSub {
				req.Subscription = nil
			}
			if resp := p.Run(t.Context(), req); resp != nil {
				t.Fatalf("Run = %+v, want nil", resp)
			}
			if diff := cmp.Diff(tc.want, req.Connections); diff != "" {
				t.Errorf("Connections (-want +got):\n%s", diff)
			}
		})
	}
}
