package wsproxy

// RingBatches is how many batches of reads went through io_uring so far, for tests.
func RingBatches() int64 { return ringBatches.Load() }

// UsesRing reports whether the engine's loops batch through io_uring, for tests.
func (e *Engine) UsesRing() bool { return e != nil && len(e.loops) > 0 && e.loops[0].ringOn.Load() }

// OnLoop reports whether s runs on the event-loop engine, for tests.
func (s *Session) OnLoop() bool { _, ok := s.impl.(*loopSession); return ok }

// Queued returns the bytes waiting in the queues of s toward the client and the backend (0
// for a session of the goroutine engine), for tests.
func (s *Session) Queued() (toClient, toBackend int) {
	ls, ok := s.impl.(*loopSession)
	if !ok {
		return 0, 0
	}
	ls.loop.call(func() { toClient, toBackend = ls.sides[clientSide].queued(), ls.sides[backendSide].queued() })
	return toClient, toBackend
}

// TLSBuffers returns the capacity of the ciphertext buffers the TLS sides of s keep between
// sends (0 for a plain side, or a session of the goroutine engine), for tests.
func (s *Session) TLSBuffers() (client, backend int) {
	ls, ok := s.impl.(*loopSession)
	if !ok {
		return 0, 0
	}
	ls.loop.call(func() {
		if x := &ls.sides[clientSide]; x.tr != nil {
			client = cap(x.tr.out)
		}
		if x := &ls.sides[backendSide]; x.tr != nil {
			backend = cap(x.tr.out)
		}
	})
	return client, backend
}

// RESTBuffers returns the capacity of the input buffers of the connections f's loops serve,
// and of the loops' idle backend connections, for tests.
func (f *Front) RESTBuffers() (clients, backends int) {
	for _, l := range f.e.loops {
		l.call(func() {
			for _, e := range l.fds {
				if c, ok := e.h.(*restConn); ok && c.f == f {
					clients += cap(c.in)
				}
			}
			for _, conns := range l.idle {
				for _, be := range conns {
					backends += cap(be.in)
				}
			}
		})
	}
	return clients, backends
}
