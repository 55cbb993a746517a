package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/pkg/apierror"
)

// relay relays messages between the browser and the gateway node after the handshake.
// The browser has two writers (the relay of node messages, and answers to browser frames), so
// its writes are serialized; the node's connection has one writer, the browser reader.
type relay struct {
	browser, upstream *websocket.Conn
	mu                sync.Mutex // serializes writes to browser
	sent, received    int        // messages to and from the node
}

func (r *relay) send(v any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.browser.SetWriteDeadline(time.Now().Add(writeWait))
	return r.browser.WriteJSON(v)
}

func (r *relay) closeBrowser(code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.browser.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = r.browser.Close()
}

// run relays until either side ends, then closes both.
func (r *relay) run() {
	r.upstream.SetReadLimit(maxMessage)
	done := make(chan struct{})
	go func() { defer close(done); r.fromNode() }()
	r.fromBrowser()
	_ = r.upstream.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	_ = r.upstream.Close()
	<-done
}

// fromNode relays the node's messages to the browser, then reports how the node closed and
// closes the browser's socket, which ends fromBrowser.
func (r *relay) fromNode() {
	for {
		mt, data, err := r.upstream.ReadMessage()
		if err != nil {
			ev := closing{Type: "close", Code: websocket.CloseAbnormalClosure, Reason: "the connection to the gateway node was lost"}
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				ev.Code, ev.Reason = ce.Code, ce.Text
			case errors.Is(err, websocket.ErrReadLimit):
				ev.Code, ev.Reason = websocket.CloseMessageTooBig, fmt.Sprintf("a message was larger than %d bytes", maxMessage)
			}
			_ = r.send(ev)
			r.closeBrowser(websocket.CloseNormalClosure, "")
			return
		}
		r.mu.Lock()
		r.received++
		r.mu.Unlock()
		ev := message{Type: "message", Data: string(data), Binary: mt == websocket.BinaryMessage, Time: time.Now().UTC().Format(time.RFC3339Nano)}
		if ev.Binary {
			ev.Data = base64.StdEncoding.EncodeToString(data)
		}
		if r.send(ev) != nil {
			return
		}
	}
}

// fromBrowser handles the browser's frames until its socket ends.
func (r *relay) fromBrowser() {
	for {
		mt, raw, err := r.browser.ReadMessage()
		if err != nil {
			return
		}
		var f frame
		if mt != websocket.TextMessage || json.Unmarshal(raw, &f) != nil {
			_ = r.send(failure{Type: "error", Code: apierror.InvalidRequestContent, Message: `A frame must be JSON: {"type":"send","data":...} or {"type":"close"}.`})
			continue
		}
		switch f.Type {
		case "send":
			data, kind := []byte(f.Data), websocket.TextMessage
			if f.Binary {
				if data, err = base64.StdEncoding.DecodeString(f.Data); err != nil {
					_ = r.send(failure{Type: "error", Code: apierror.InvalidRequestContent, Message: "The data of a binary frame must be base64."})
					continue
				}
				kind = websocket.BinaryMessage
			}
			_ = r.upstream.SetWriteDeadline(time.Now().Add(writeWait))
			if r.upstream.WriteMessage(kind, data) != nil {
				continue // fromNode sees the connection end and reports it
			}
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
		case "close":
			_ = r.upstream.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			// The node answers with its close frame, which fromNode reports; do not wait for ever.
			_ = r.upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
		default:
			_ = r.send(failure{Type: "error", Code: apierror.InvalidRequestContent, Message: `A frame's type must be "send" or "close".`})
		}
	}
}
