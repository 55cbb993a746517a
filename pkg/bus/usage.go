package bus

import (
	"fmt"
	"time"
)

// UsageStream is the JetStream stream that carries gateway usage batches to management, which
// creates it. It is a work queue: a batch leaves the stream once management has stored it.
const UsageStream = "GATEHOUSE_USAGE"

// UsageSubjects is the subject filter of UsageStream.
const UsageSubjects = "gatehouse.usage.>"

// UsageDuplicateWindow is how long JetStream remembers the message ids (batch ids) of
// UsageStream. A batch re-sent later is still counted once: management stores usage rows
// idempotently by node, minute, API and subscription.
const UsageDuplicateWindow = time.Hour

// UsageSubject is the subject a gateway node publishes the usage batches of service serviceID
// (its internal id) on, escaped with SubjectToken; the payload (configwire.UsageBatch)
// carries the unescaped value.
func UsageSubject(serviceID string) string { return "gatehouse.usage." + SubjectToken(serviceID) }

// UsageBatchID is the id of a node's usage batch, also its JetStream de-duplication id
// (Nats-Msg-Id): the node, the first minute the batch covers (Unix seconds) and the node's
// sequence number of the batch, so that two batches of a node never share an id.
func UsageBatchID(nodeID string, minute time.Time, seq uint64) string {
	return fmt.Sprintf("%s:%d:%d", nodeID, minute.Unix(), seq)
}
