package bus

// ConnectionLogSubjects is the subject filter of every gateway node's connection log. The log
// travels on core NATS, like heartbeats: management's replicas share it through one queue
// group, so each batch is stored once, and store it idempotently by correlation id.
const ConnectionLogSubjects = "gatehouse.connlog.>"

// ConnectionLogSubject is the subject a gateway node of gateway resource gateway in service
// serviceID (its internal id) publishes the records of its closed WebSocket sessions on
// (configwire.ConnectionLogBatch): "gatehouse.connlog.<serviceID>.<gateway>", each part
// escaped with SubjectToken. The payload carries the unescaped values; the subject only
// routes, and binds the batch's node authentication to that service and gateway.
func ConnectionLogSubject(serviceID, gateway string) string {
	return "gatehouse.connlog." + SubjectToken(serviceID) + "." + SubjectToken(gateway)
}
