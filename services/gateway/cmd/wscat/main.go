// Command wscat is a small WebSocket client for trying Gatehouse: it connects to a URL, prints
// the handshake result (or the gateway's error body), sends each line of standard input as a
// text message, and prints every message received.
//
//	wscat [-H 'Name: value']... [-n count] [-m message] ws://host/path?subscription-key=...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	var hdrs headers
	flag.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	message := flag.String("m", "", "send this message instead of reading standard input, then wait for -n replies")
	count := flag.Int("n", 1, "with -m: replies to wait for")
	subprotocol := flag.String("s", "", "subprotocols to offer, comma separated")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: wscat [-H 'Name: value'] [-s protocols] [-m message [-n replies]] ws://host/path")
		os.Exit(2)
	}
	h := http.Header{}
	for _, kv := range hdrs {
		k, v, _ := strings.Cut(kv, ":")
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	d := websocket.Dialer{HandshakeTimeout: 15 * time.Second, EnableCompression: true}
	if *subprotocol != "" {
		d.Subprotocols = strings.Split(*subprotocol, ",")
	}
	c, resp, err := d.Dial(flag.Arg(0), h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			fmt.Fprintf(os.Stderr, "handshake refused: %s\n%s\n", resp.Status, body)
		} else {
			fmt.Fprintln(os.Stderr, "connect failed:", err)
		}
		os.Exit(1)
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "connected: %s (subprotocol %q)\n", resp.Status, c.Subprotocol())
	done := make(chan struct{})
	received := 0
	go func() {
		defer close(done)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					fmt.Fprintf(os.Stderr, "closed: %d %s\n", ce.Code, ce.Text)
				}
				return
			}
			fmt.Printf("< %s\n", msg)
			received++
			if *message != "" && received >= *count {
				return
			}
		}
	}()
	if *message != "" {
		if err := c.WriteMessage(websocket.TextMessage, []byte(*message)); err != nil {
			fmt.Fprintln(os.Stderr, "send failed:", err)
			os.Exit(1)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			fmt.Fprintln(os.Stderr, "timed out waiting for replies")
			os.Exit(1)
		}
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
		return
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if err := c.WriteMessage(websocket.TextMessage, sc.Bytes()); err != nil {
			break
		}
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
