package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gatehouse.dev/pkg/pipeline/pipelinetest"
)

// TestPolicyCorpus runs every document of the policy corpus through management and a real
// node (issue 11): each is either refused by management with a ValidationError, or accepted,
// compiled by the node without failure, and enforced as the corpus says — never accepted and
// then failing.
func TestPolicyCorpus(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	for name, nv := range pipelinetest.NamedValues {
		s.put(t, "/namedValues/"+name, map[string]any{"displayName": name, "value": nv.Value, "secret": nv.Secret})
		if nv.Secret {
			s.secret(nv.Value, "the secret named value "+name)
		}
	}
	for name, u := range pipelinetest.Backends {
		s.put(t, "/backends/"+name, map[string]any{"url": u.With(be.wsURL("/" + name)), "protocol": "http"})
	}
	for id, v := range pipelinetest.Fragments {
		s.put(t, "/policyFragments/"+id, map[string]any{"value": v, "format": "xml"})
	}
	key := s.subscription(t, "corpus", "/apis", "active")
	entries := pipelinetest.Corpus()
	accepted := map[int]bool{}
	for i, e := range entries {
		api := fmt.Sprintf("c%d", i)
		s.wsAPI(t, api, api, be.wsURL("/"+api), nil)
		r := s.do(t, http.MethodPut, "/apis/"+api+"/operations/onHandshake/policies/policy",
			map[string]any{"properties": map[string]any{"format": "xml", "value": e.Document.With(be.wsURL("/" + api + "/redirected"))}})
		switch {
		case r.Status == http.StatusBadRequest && r.ErrorCode() == "ValidationError":
			if e.Status != 0 {
				t.Errorf("%s: refused, the corpus says a node enforces it (%d): %s", e.Name, e.Status, r.Body)
			}
			if strings.Contains(string(r.Body), pipelinetest.NamedValues["nv-secret"].Value) {
				t.Errorf("%s: the refusal quotes a secret named value", e.Name)
			}
		case r.Status == http.StatusOK || r.Status == http.StatusCreated:
			if e.Status == 0 {
				t.Errorf("%s: accepted (%d), the corpus says management refuses it", e.Name, r.Status)
			}
			accepted[i] = true
		default:
			t.Errorf("%s: %d %s, want 200/201 or 400 ValidationError", e.Name, r.Status, r.Body)
		}
	}
	n := s.startNode(t, "gw1", nodeOptions{})
	s.converge(t, 1)
	wantFailures(t, s, 1, "")
	for i, e := range entries {
		if !accepted[i] {
			continue
		}
		st, _, body := handshake(t, n.ws(fmt.Sprintf("/c%d", i)), keyHeader(key))
		if st != e.Status {
			t.Errorf("%s: handshake %d %s, want %d", e.Name, st, body, e.Status)
		}
	}
	if log := n.log.String(); strings.Contains(log, "PolicyCompileFailure") || strings.Contains(log, "does not compile on this node") {
		t.Errorf("the node logged a compile failure for a document management accepted")
	}
}
