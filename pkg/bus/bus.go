// Package bus names the NATS subjects, JetStream streams and message headers that management and
// gateways share. Both sides build subjects only through this package.
package bus

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ConfigStream is the JetStream stream that carries every committed configuration change.
const ConfigStream = "GATEHOUSE_CONFIG"

// ConfigSubjects is the subject filter of ConfigStream.
const ConfigSubjects = "gatehouse.config.>"

// ConfigDuplicateWindow is how long JetStream remembers message ids of ConfigStream. A relay that
// crashed after publishing but before marking its outbox row re-publishes within this window and
// the duplicate is dropped; later re-publications are ignored by gateways by revision.
const ConfigDuplicateWindow = time.Hour

// ConfigSubject is the subject carrying the changes of one service (its internal id).
func ConfigSubject(serviceID string) string { return "gatehouse.config." + serviceID }

// Headers set on every ConfigStream message.
const (
	// HeaderRevision carries the service revision the message brings the configuration to.
	HeaderRevision = "Gatehouse-Revision"
	// HeaderService carries the internal id of the service.
	HeaderService = "Gatehouse-Service"
	// HeaderSignature carries management's signature of a change (configwire.Signer), and of
	// a live-connection request.
	HeaderSignature = "Gatehouse-Signature"
)

// HeaderNodeAuth carries a gateway node's authentication of a heartbeat or a live-connection
// reply (configwire.NodeKey.Sign).
const HeaderNodeAuth = "Gatehouse-Node-Auth"

// ConfigMsgID is the JetStream de-duplication id (Nats-Msg-Id) of a service's revision whose
// change carries the signature sig (a HeaderSignature value). It holds a digest of the
// signature, which only management can produce: a message someone else publishes with the id
// of a revision to come never makes JetStream drop management's real change as a duplicate
// (issue 12). Signatures are deterministic, so a change re-published after a crash keeps its
// id and is still de-duplicated.
func ConfigMsgID(serviceID string, revision int64, sigDigest string) string {
	return fmt.Sprintf("%s:%d:%s", serviceID, revision, sigDigest)
}

// ParseRevision reads a HeaderRevision value.
func ParseRevision(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }

// HeartbeatSubjects is the subject filter of every gateway node's heartbeat. Heartbeats travel
// on core NATS (not JetStream): each management replica subscribes and receives them all, and a
// heartbeat lost while no replica listens is replaced by the next one.
const HeartbeatSubjects = "gatehouse.heartbeat.>"

// HeartbeatSubject is the subject a gateway node of gateway resource gateway in service
// serviceID (its internal id) publishes its heartbeats on:
// "gatehouse.heartbeat.<serviceID>.<gateway>", each part escaped with SubjectToken. The
// payload (configwire.Heartbeat) carries the unescaped values; the subject only routes.
func HeartbeatSubject(serviceID, gateway string) string {
	return "gatehouse.heartbeat." + SubjectToken(serviceID) + "." + SubjectToken(gateway)
}

// SubjectToken escapes s into one NATS subject token. Letters, digits, '-' and '_' stand for
// themselves; every other byte (NATS reserves '.', '*', '>' and white space) becomes '~'
// followed by two upper-case hex digits, so distinct inputs give distinct tokens. The empty
// string, which is no valid token, becomes "~".
func SubjectToken(s string) string {
	if s == "" {
		return "~"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('~')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// ConnectionsSubject is the subject management sends live-connection requests
// (configwire.ConnectionsRequest) of the service serviceID (its internal id) on, on core NATS
// with a reply subject: "gatehouse.connections.<serviceID>", escaped with SubjectToken. Every
// node of the service answers each request once (configwire.ConnectionsReply).
func ConnectionsSubject(serviceID string) string {
	return "gatehouse.connections." + SubjectToken(serviceID)
}

// NodeInboxPrefix is the inbox prefix of a gateway node's NATS connection: replies to the
// node's requests (JetStream API calls, pulls, counters' round trips) arrive under it, and a
// node may subscribe nowhere else for replies, so that it never reads another node's (issue 12).
// Management names it in the snapshot (configwire.NATSInfo.InboxPrefix).
func NodeInboxPrefix(serviceID, gateway string) string {
	return "_GH_INBOX." + SubjectToken(serviceID) + "." + SubjectToken(gateway)
}
