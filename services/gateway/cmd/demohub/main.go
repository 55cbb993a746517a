// Command demohub is the demo backend of `make run`: a WebSocket hub in the manner of Azure Web
// PubSub. A client connects to /client/hubs/{hub}?access_token=..., the token must equal
// DEMOHUB_ACCESS_TOKEN (if set), and every text or binary message is echoed to the sender and,
// when it starts with "broadcast:", sent to every client of the hub.
package main

import (
	"crypto/subtle"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type hub struct {
	mu      sync.Mutex
	clients map[*websocket.Conn]*sync.Mutex
}

func main() {
	listen := flag.String("listen", envOr("DEMOHUB_LISTEN", "127.0.0.1:9000"), "listen address (DEMOHUB_LISTEN)")
	token := flag.String("access-token", os.Getenv("DEMOHUB_ACCESS_TOKEN"), "required access_token query value; empty accepts any (DEMOHUB_ACCESS_TOKEN)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var mu sync.Mutex
	hubs := map[string]*hub{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, EnableCompression: true,
		Subprotocols: []string{"json.webpubsub.azure.v1", "demo"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /client/hubs/{hub}", func(w http.ResponseWriter, r *http.Request) {
		if *token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("access_token")), []byte(*token)) != 1 {
			http.Error(w, `{"code":"Unauthorized","message":"access_token is missing or wrong"}`, http.StatusUnauthorized)
			return
		}
		name := r.PathValue("hub")
		mu.Lock()
		h := hubs[name]
		if h == nil {
			h = &hub{clients: map[*websocket.Conn]*sync.Mutex{}}
			hubs[name] = h
		}
		mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wmu := &sync.Mutex{}
		h.mu.Lock()
		h.clients[c] = wmu
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			delete(h.clients, c)
			h.mu.Unlock()
			c.Close()
		}()
		log.Info("client connected", "hub", name, "remote", r.RemoteAddr, "subprotocol", c.Subprotocol())
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			targets := []*websocket.Conn{c}
			if strings.HasPrefix(string(msg), "broadcast:") {
				h.mu.Lock()
				targets = targets[:0]
				for other := range h.clients {
					targets = append(targets, other)
				}
				h.mu.Unlock()
			}
			for _, t := range targets {
				h.mu.Lock()
				m := h.clients[t]
				h.mu.Unlock()
				if m == nil {
					continue
				}
				m.Lock()
				_ = t.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_ = t.WriteMessage(kind, msg)
				m.Unlock()
			}
		}
	})
	log.Info("demohub listening", "addr", *listen)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("demohub stopped", "err", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
