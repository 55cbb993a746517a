package wsproxy

// RingBatches is how many batches of reads went through io_uring so far, for tests.
func RingBatches() int64 { return ringBatches.Load() }

// UsesRing reports whether the engine's loops batch through io_uring, for tests.
func (e *Engine) UsesRing() bool { return e != nil && len(e.loops) > 0 && e.loops[0].ringOn.Load() }

// OnLoop reports whether s runs on the event-loop engine, for tests.
func (s *Session) OnLoop() bool { _, ok := s.impl.(*loopSession); return ok }
