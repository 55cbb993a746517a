package wsproxy

import (
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// TLSListener wraps a TCP listener for tls.NewListener so that the TLS connections it accepts
// can move onto the event loops once upgraded: each accepted connection is a tlsTransport,
// the TCP connection itself until the engine takes it over.
func TLSListener(ln net.Listener) net.Listener { return tlsListener{ln} }

type tlsListener struct{ net.Listener }

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		return &tlsTransport{TCPConn: tc}, nil
	}
	return c, err
}

// tlsTransport is the connection under a tls.Conn that an event loop can take over. Until
// then it is its TCP connection. After, the loop owns the socket: reads give crypto/tls the
// ciphertext the loop read (and a temporary "would block" error when there is no more, which
// crypto/tls keeps no record of), and writes collect the ciphertext crypto/tls produces for
// the loop to send. So TLS records are decrypted and encrypted on the loop, by crypto/tls,
// with no goroutine per connection.
type tlsTransport struct {
	*net.TCPConn
	looped bool
	in     []byte // ciphertext read, not yet taken by crypto/tls
	out    []byte // ciphertext to send
}

// errWouldBlock tells crypto/tls that no ciphertext is at hand yet: a temporary net.Error,
// which it returns to its caller without failing the connection.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "wsproxy: no more ciphertext yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (t *tlsTransport) Read(p []byte) (int, error) {
	if !t.looped {
		return t.TCPConn.Read(p)
	}
	if len(t.in) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, t.in)
	t.in = t.in[n:]
	return n, nil
}

func (t *tlsTransport) Write(p []byte) (int, error) {
	if !t.looped {
		return t.TCPConn.Write(p)
	}
	t.out = append(t.out, p...)
	return len(p), nil
}

func (t *tlsTransport) Close() error {
	if !t.looped {
		return t.TCPConn.Close()
	}
	return nil // the loop closes the socket
}

func (t *tlsTransport) SetDeadline(d time.Time) error {
	if !t.looped {
		return t.TCPConn.SetDeadline(d)
	}
	return nil
}

func (t *tlsTransport) SetReadDeadline(d time.Time) error {
	if !t.looped {
		return t.TCPConn.SetReadDeadline(d)
	}
	return nil
}

func (t *tlsTransport) SetWriteDeadline(d time.Time) error {
	if !t.looped {
		return t.TCPConn.SetWriteDeadline(d)
	}
	return nil
}

// tlsOutKeep is the most ciphertext buffer a TLS side keeps between sends: a full record
// and its overhead. A larger one, grown by a large message, goes, so that an idle session
// holds no buffer of its own.
const tlsOutKeep = 17 << 10

// sent empties the ciphertext buffer after its bytes were written or copied to the queue.
func (t *tlsTransport) sent() {
	if cap(t.out) > tlsOutKeep {
		t.out = nil
	} else {
		t.out = t.out[:0]
	}
}

// loopTransport returns what a TLS client connection to a backend is to be layered on so
// that an event loop can take it over once upgraded (as TLSListener does for clients): a
// tlsTransport for a TCP connection, else c itself.
func loopTransport(c net.Conn) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &tlsTransport{TCPConn: tc}
	}
	return c
}

// loopTLS returns the transport under c when c is a TLS connection the loop can take over.
func loopTLS(c net.Conn) (*tls.Conn, *tlsTransport) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	tr, ok := tc.NetConn().(*tlsTransport)
	if !ok || tr.looped {
		return nil, nil
	}
	return tc, tr
}

// takeTLS takes the socket under a TLS connection: from now on crypto/tls reads and writes
// through the loop.
func takeTLS(tr *tlsTransport) (int, error) {
	fd, err := takeFD(tr.TCPConn)
	if err != nil {
		return -1, err
	}
	tr.looped = true
	tr.TCPConn.Close()
	return fd, nil
}

// relayTLS relays the plaintext crypto/tls makes of the ciphertext p read from x. All of p
// is handed to crypto/tls before it returns (it keeps what does not yet make a record), so
// the loop's buffer is free again.
func (s *loopSession) relayTLS(x *lside, p []byte) {
	x.tr.in = p
	s.decrypt(x)
	x.tr.in = nil
}

// decrypt relays the plaintext crypto/tls has for x.
func (s *loopSession) decrypt(x *lside) {
	plain := s.loop.plain
	x.tr.out = x.tr.out[:0]
	for !x.eof {
		n, err := x.tls.Read(plain)
		if n > 0 {
			s.consume(x, x.peer, plain[:n])
		}
		if err != nil {
			if !errors.Is(err, errWouldBlock) {
				s.ended(x) // close_notify, or a record that does not decrypt
			}
			break
		}
	}
	// crypto/tls may have answered something (a key update). Its answers are x's to read,
	// as the peer's bytes are: while x's queue is full x is not read, or a peer that asks
	// and never reads fills it without end (on goroutines crypto/tls's Read waits for the
	// write).
	if len(x.tr.out) > 0 {
		s.sendPlain(x, x.tr.out, false)
		x.tr.sent()
		if x.queued() > maxQueued {
			x.paused, x.answered = true, true
		}
	}
}

// encrypt returns b as TLS records for x, in x.tr.out: the caller sends them and empties it.
func (s *loopSession) encrypt(x *lside, b []byte) []byte {
	x.tr.out = x.tr.out[:0]
	if _, err := x.tls.Write(b); err != nil {
		return nil
	}
	return x.tr.out
}

// closeTLS sends x a close_notify alert if its socket takes it at once.
func (s *loopSession) closeTLS(x *lside) {
	if x.tls == nil || x.broken || x.fd < 0 || x.queued() > 0 {
		return
	}
	x.tr.out = x.tr.out[:0]
	if x.tls.CloseWrite() == nil && len(x.tr.out) > 0 {
		loopWrite(x.fd, x.tr.out)
	}
}
