package mgmttest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// ConsolePath is the test console's WebSocket below the Env's URL.
const ConsolePath = "/gatehouse/portal/v1/console"

// Console is a browser's socket on the Env's test console (issue 6). Its methods fail the test
// on a socket error and wait at most 20 s.
type Console struct {
	t    testing.TB
	Conn *websocket.Conn
}

// ConsoleEvent is a message of the test console to the browser, of any type.
type ConsoleEvent struct {
	Type    string            `json:"type"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	URL     string            `json:"url"`
	MS      *int64            `json:"ms"`
	Data    string            `json:"data"`
	Binary  bool              `json:"binary"`
	Time    string            `json:"time"`
	Reason  string            `json:"reason"`
	Message string            `json:"message"`
	// Code is a close code (a number) or an error code (a string); see CloseCode and ErrorCode.
	Code json.RawMessage `json:"code"`
}

// ErrorCode is the code of an error event, or "".
func (e ConsoleEvent) ErrorCode() string {
	var s string
	_ = json.Unmarshal(e.Code, &s)
	return s
}

// CloseCode is the code of a close event, or 0.
func (e ConsoleEvent) CloseCode() int {
	var n int
	_ = json.Unmarshal(e.Code, &n)
	return n
}

// OpenConsole connects to the test console and sends open, a string as it is or any other
// value as JSON, as the opening message. The socket is closed when t ends.
func (e *Env) OpenConsole(t testing.TB, open any) *Console {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.URL, "http")+ConsolePath, nil)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	con := &Console{t: t, Conn: c}
	if s, ok := open.(string); ok {
		con.write([]byte(s))
	} else {
		con.Send(open)
	}
	return con
}

func (c *Console) write(data []byte) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(websocket.TextMessage, data); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// Send sends v as a JSON text message.
func (c *Console) Send(v any) {
	c.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(raw)
}

// Next reads the next event.
func (c *Console) Next() ConsoleEvent {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var ev ConsoleEvent
	if err := c.Conn.ReadJSON(&ev); err != nil {
		c.t.Fatalf("console read: %v", err)
	}
	return ev
}

// Closed reads until management closes the socket, failing on any event, and returns the
// close code.
func (c *Console) Closed() int {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, data, err := c.Conn.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			return ce.Code
		case err != nil:
			c.t.Fatalf("console ended without a close frame: %v", err)
		default:
			c.t.Fatalf("console sent %s; want it to close", data)
		}
	}
}
