package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/pkg/apierror"
)

// TestVersionsOnANode routes one WebSocket API's versions, v1 and v2 on different backends,
// by each scheme of APIM's version sets through a real node (issue 15).
func TestVersionsOnANode(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	v1, v2 := newBackend(t, "v1", ""), newBackend(t, "v2", "")
	for _, set := range []struct{ name, scheme, query, header string }{
		{"seg", "Segment", "", ""}, {"qry", "Query", "api-version", ""}, {"hdr", "Header", "", "Api-Version"},
	} {
		props := map[string]any{"displayName": set.name, "versioningScheme": set.scheme}
		if set.query != "" {
			props["versionQueryName"] = set.query
		}
		if set.header != "" {
			props["versionHeaderName"] = set.header
		}
		s.put(t, "/apiVersionSets/"+set.name, props)
		for _, be := range []*backend{v1, v2} {
			s.wsAPI(t, set.name+"-"+be.name, set.name, be.wsURL("/"+set.name), map[string]any{
				"apiVersion": be.name, "apiVersionSetId": s.svc + "/apiVersionSets/" + set.name, "subscriptionRequired": false})
		}
	}
	n := s.startNode(t, "versions", nodeOptions{})
	n.waitReady(t)

	for _, tc := range []struct {
		name, url string
		header    http.Header
		want      string // the backend reached; "" = refused with 404
	}{
		{"segment v1", n.ws("/seg/v1"), nil, "v1"},
		{"segment v2", n.ws("/seg/v2"), nil, "v2"},
		{"query v1", n.ws("/qry?api-version=v1"), nil, "v1"},
		{"query v2", n.ws("/qry?api-version=v2"), nil, "v2"},
		{"header v1", n.ws("/hdr"), http.Header{"Api-Version": {"v1"}}, "v1"},
		{"header v2", n.ws("/hdr"), http.Header{"Api-Version": {"v2"}}, "v2"},
		{"segment without a version", n.ws("/seg"), nil, ""},
		{"query without a version", n.ws("/qry"), nil, ""},
		{"header with an unknown version", n.ws("/hdr"), http.Header{"Api-Version": {"v3"}}, ""},
	} {
		if tc.want == "" {
			st, h, body := handshake(t, tc.url, tc.header)
			wantGatewayError(t, st, h, body, http.StatusNotFound, apierror.MsgNotFound)
			continue
		}
		c, hi := connect(t, tc.url, tc.header)
		if hi.Backend != tc.want {
			t.Errorf("%s: reached backend %q, want %q", tc.name, hi.Backend, tc.want)
		}
		c.Close()
	}
}

// TestRevisionsOnANode serves revision 2 of a WebSocket API at path;rev=2 with its own
// onHandshake policy, then makes it current while a session on revision 1 is open: that
// session keeps relaying, and new handshakes at the path reach revision 2 (issue 15).
func TestRevisionsOnANode(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	rev1, rev2 := newBackend(t, "rev1", ""), newBackend(t, "rev2", "")
	s.wsAPI(t, "chat", "chat", rev1.wsURL("/chat"), map[string]any{"subscriptionRequired": false})
	s.put(t, "/apis/chat;rev=2", map[string]any{"sourceApiId": s.svc + "/apis/chat", "serviceUrl": rev2.wsURL("/chat"),
		"apiRevisionDescription": "the new backend"})
	s.handshakePolicy(t, "chat;rev=2", `<policies><inbound><base />
		<check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Tenant not allowed" ignore-case="true">
			<value>contoso</value>
		</check-header></inbound></policies>`)
	n := s.startNode(t, "revisions", nodeOptions{})
	n.waitReady(t)

	contoso := http.Header{"X-Tenant": {"contoso"}}
	if _, hi := connect(t, n.ws("/chat;rev=2"), contoso); hi.Backend != "rev2" {
		t.Errorf("chat;rev=2 reached %q, want rev2", hi.Backend)
	}
	st, h, body := handshake(t, n.ws("/chat;rev=2"), nil)
	wantGatewayError(t, st, h, body, http.StatusForbidden, "Tenant not allowed")
	old, hi := connect(t, n.ws("/chat"), nil)
	if hi.Backend != "rev1" {
		t.Fatalf("chat reached %q, want rev1", hi.Backend)
	}

	s.put(t, "/apis/chat/releases/go-live", map[string]any{"apiId": s.svc + "/apis/chat;rev=2", "notes": "rev2 goes live"})
	eventually(t, 30*time.Second, func() string {
		st, _, body := handshake(t, n.ws("/chat"), nil)
		if st != http.StatusForbidden {
			return fmt.Sprintf("chat without a tenant = %d %s, want 403 from revision 2's policy", st, body)
		}
		return ""
	})
	if _, hi := connect(t, n.ws("/chat"), contoso); hi.Backend != "rev2" {
		t.Errorf("after the release chat reached %q, want rev2", hi.Backend)
	}
	if _, hi := connect(t, n.ws("/chat;rev=1"), nil); hi.Backend != "rev1" {
		t.Errorf("after the release chat;rev=1 reached %q, want rev1", hi.Backend)
	}
	// The session opened on revision 1 still relays, to revision 1's backend.
	if err := old.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatalf("the open session on revision 1: %v", err)
	}
	_ = old.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := old.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("the open session on revision 1 read %q, %v; want the echo", msg, err)
	}
}
