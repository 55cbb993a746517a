// Package bus names the NATS subjects, JetStream streams and message headers that management and
// gateways share. Both sides build subjects only through this package.
package bus

import (
	"fmt"
	"strconv"
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
)

// ConfigMsgID is the JetStream de-duplication id (Nats-Msg-Id) of a service's revision.
func ConfigMsgID(serviceID string, revision int64) string {
	return fmt.Sprintf("%s:%d", serviceID, revision)
}

// ParseRevision reads a HeaderRevision value.
func ParseRevision(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }
