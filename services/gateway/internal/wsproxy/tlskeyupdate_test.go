//go:build linux

package wsproxy_test

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
	"gatehouse.dev/pkg/syncbuf"
)

// TestTLSKeyUpdateFlood: a TLS 1.3 peer (a wss backend, or a client of a TLS listener) that
// does not read sends KeyUpdate messages asking for the gateway's own, a few data bytes
// between them (crypto/tls allows 16 handshake messages in a row). crypto/tls answers each
// one; on goroutines the answer is a blocking write, so reading that peer waits once its
// socket is full. On the loops the answers go to the peer's queue: the loop must stop
// reading the peer while that queue is full, as it does when the other side's queue is,
// or a peer makes the gateway hold any amount of memory.
func TestTLSKeyUpdateFlood(t *testing.T) {
	t.Parallel()
	// The gateway reads the peer until its queue toward the peer (maxQueued, 64 KiB) is
	// full; one more read of the peer (64 KiB of records) answers about as many bytes.
	const bound = 160 << 10 // with room to spare
	// Answers are 26 bytes each: enough of them to be far over the bound, beyond what the
	// kernel holds on the way (the peer's socket announces a small segment size and a small
	// window, so the gateway's socket buffers little).
	const updates, perByte = 20_000, 8

	t.Run("backend", func(t *testing.T) {
		t.Parallel()
		keys := &keyLog{}
		peers := make(chan *tls.Conn, 1)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Accept: %s\r\n\r\n", accept(r.Header.Get("Sec-WebSocket-Key")))
			peers <- conn.(*tls.Conn)
		}))
		srv.Listener.Close()
		srv.Listener = smallSocketListener(t)
		srv.EnableHTTP2 = false
		// No session tickets: the 101 is the only record the server writes before the test's.
		srv.TLS = &tls.Config{KeyLogWriter: keys, SessionTicketsDisabled: true, MinVersion: tls.VersionTLS13}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		gw := startGateway(t, "wss"+strings.TrimPrefix(srv.URL, "https"), withTLS(trusting(&backend{srv: srv})))
		client := rawDial(t, gw.url("/"))
		var peer *tls.Conn
		select {
		case peer = <-peers:
			t.Cleanup(func() { peer.NetConn().Close() })
		case <-time.After(waitFor):
			t.Fatal("backend got no connection")
		}
		s := onLoop(t, gw)
		w := newRecordWriter(t, peer.ConnectionState(), keys.secret(t, "SERVER_TRAFFIC_SECRET_0"), 1) // after the 101

		// One binary frame to the client, a byte of it after every few key updates.
		f := mustFrame(t, true, 0, frame.OpBinary, false, make([]byte, updates/perByte))
		go peer.NetConn().Write(keyUpdateFlood(w, f, updates, perByte))
		relayed := make(chan error, 1)
		go func() {
			client.SetReadDeadline(time.Now().Add(waitFor))
			_, err := io.ReadFull(client.r, make([]byte, len(f)))
			relayed <- err
		}()
		waitRelayed(relayed)
		if _, q := s.Queued(); q > bound {
			t.Errorf("%d bytes queued toward a backend that does not read, want at most %d", q, bound)
		}
		// The session still ends when both go, the backend's end seen through its queue.
		client.Close()
		peer.NetConn().Close()
		gw.result(t)
	})

	t.Run("client", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		gw := startGateway(t, be.url(), withClientTLS())
		keys := &keyLog{}
		conf := gw.dialer().TLSClientConfig.Clone()
		conf.KeyLogWriter, conf.MinVersion, conf.ServerName = keys, tls.VersionTLS13, "127.0.0.1"
		d := net.Dialer{Control: smallSocket}
		raw, err := d.Dial("tcp", gw.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		peer := tls.Client(raw, conf)
		fmt.Fprintf(peer, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", gw.srv.Listener.Addr(), rawKey)
		peer.SetReadDeadline(time.Now().Add(waitFor))
		resp, err := http.ReadResponse(bufio.NewReader(peer), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v, %v", resp, err)
		}
		b := be.conn(t)
		s := onLoop(t, gw)
		w := newRecordWriter(t, peer.ConnectionState(), keys.secret(t, "CLIENT_TRAFFIC_SECRET_0"), 1) // after the request

		f := mustFrame(t, true, 0, frame.OpBinary, true, make([]byte, updates/perByte))
		go raw.Write(keyUpdateFlood(w, f, updates, perByte))
		relayed := make(chan error, 1)
		go func() {
			b.SetReadDeadline(time.Now().Add(waitFor))
			_, _, err := b.ReadMessage()
			relayed <- err
		}()
		waitRelayed(relayed)
		if q, _ := s.Queued(); q > bound {
			t.Errorf("%d bytes queued toward a client that does not read, want at most %d", q, bound)
		}
		raw.Close()
		b.Close()
		gw.result(t)
	})
}

// onLoop returns gw's session, skipping the test unless it runs on the event loops (on
// goroutines crypto/tls writes its answers itself, and the session has no queue).
func onLoop(t *testing.T, gw *gateway) *wsproxy.Session {
	t.Helper()
	s := gw.session(t)
	if !s.OnLoop() {
		t.Skip("the session runs on the goroutine engine")
	}
	return s
}

// waitRelayed waits until the whole frame was relayed, which takes the gateway reading all
// of the flood; or, when it stops reading before that (as it should), for a while: the
// queue is looked at then. A slow machine only makes the test less likely to see a queue
// that grows; it cannot fail it.
func waitRelayed(relayed <-chan error) {
	select {
	case <-relayed:
	case <-time.After(waitFor / 2):
	}
}

// keyUpdateFlood returns records asking for n key updates, with f's bytes in records of
// their own: the first two with the first one, then one after every per updates.
func keyUpdateFlood(w *recordWriter, f []byte, n, per int) []byte {
	out := w.record(nil, recordData, f[:2])
	f = f[2:]
	for i := range n {
		out = w.keyUpdate(out)
		if i%per == per-1 && len(f) > 0 {
			out = w.record(out, recordData, f[:1])
			f = f[1:]
		}
	}
	if len(f) > 0 {
		out = w.record(out, recordData, f)
	}
	return out
}

// smallSocket announces a small segment size and receive window on a socket before it
// connects or listens, so that little of what is sent to it waits in the sender's kernel.
func smallSocket(network, address string, c syscall.RawConn) error {
	var err error
	c.Control(func(fd uintptr) {
		if err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536); err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}
	})
	return err
}

// smallSocketListener listens on a loopback port with smallSocket's options, which the
// connections it accepts inherit.
func smallSocketListener(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: smallSocket}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// keyLog collects a tls.Config's KeyLogWriter lines.
type keyLog struct{ syncbuf.Buffer }

// secret returns the secret logged with label.
func (k *keyLog) secret(t *testing.T, label string) []byte {
	t.Helper()
	for line := range strings.Lines(k.String()) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == label {
			s, err := hex.DecodeString(f[2])
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatalf("no %s in the key log", label)
	return nil
}

// recordWriter writes TLS 1.3 records of one direction by hand (RFC 8446 §5.2, §7), with
// the AES-GCM suites: crypto/tls cannot be made to send KeyUpdate requests.
type recordWriter struct {
	hash   func() hash.Hash
	keyLen int
	secret []byte
	aead   cipher.AEAD
	iv     []byte
	seq    uint64
}

const (
	recordHandshake = 22
	recordData      = 23
)

// newRecordWriter continues the direction whose traffic secret is secret after seq records.
func newRecordWriter(t *testing.T, st tls.ConnectionState, secret []byte, seq uint64) *recordWriter {
	t.Helper()
	w := &recordWriter{hash: sha256.New, keyLen: 16}
	switch st.CipherSuite {
	case tls.TLS_AES_128_GCM_SHA256:
	case tls.TLS_AES_256_GCM_SHA384:
		w.hash, w.keyLen = sha512.New384, 32
	default:
		t.Skipf("the test writes AES-GCM records, not %s", tls.CipherSuiteName(st.CipherSuite))
	}
	w.setSecret(secret)
	w.seq = seq
	return w
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func (w *recordWriter) expandLabel(secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := append([]byte{byte(n >> 8), byte(n), byte(len(full))}, full...)
	out, err := hkdf.Expand(w.hash, secret, string(append(info, 0)), n)
	if err != nil {
		panic(err)
	}
	return out
}

func (w *recordWriter) setSecret(secret []byte) {
	w.secret = secret
	block, err := aes.NewCipher(w.expandLabel(secret, "key", w.keyLen))
	if err != nil {
		panic(err)
	}
	if w.aead, err = cipher.NewGCM(block); err != nil {
		panic(err)
	}
	w.iv = w.expandLabel(secret, "iv", 12)
	w.seq = 0
}

// record appends a record of content type typ holding content to dst.
func (w *recordWriter) record(dst []byte, typ byte, content []byte) []byte {
	inner := append(append([]byte(nil), content...), typ)
	n := len(inner) + w.aead.Overhead()
	header := []byte{recordData, 3, 3, byte(n >> 8), byte(n)}
	nonce := append([]byte(nil), w.iv...)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], w.seq)
	for i := range seq {
		nonce[4+i] ^= seq[i]
	}
	w.seq++
	return w.aead.Seal(append(dst, header...), nonce, inner, header)
}

// keyUpdate appends a KeyUpdate asking for the peer's and moves on to the next secret.
func (w *recordWriter) keyUpdate(dst []byte) []byte {
	dst = w.record(dst, recordHandshake, []byte{24, 0, 0, 1, 1}) // key_update, update_requested
	w.setSecret(w.expandLabel(w.secret, "traffic upd", w.hash().Size()))
	return dst
}
