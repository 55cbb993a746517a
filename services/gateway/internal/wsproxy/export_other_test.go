//go:build !linux

package wsproxy

// RingBatches is how many batches of reads went through io_uring so far: none here.
func RingBatches() int64 { return 0 }

// UsesRing reports whether the engine's loops batch through io_uring: no loops here.
func (e *Engine) UsesRing() bool { return false }

// OnLoop reports whether s runs on the event-loop engine: never here.
func (s *Session) OnLoop() bool { return false }

// TLSBuffers returns zeros: there are no loops on this system.
func (s *Session) TLSBuffers() (client, backend int) { return 0, 0 }
