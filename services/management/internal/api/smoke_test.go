package api_test

import (
	"testing"

	"gatehouse.dev/management/internal/mgmttest"
)

func TestSmokeCreateWebSocketAPI(t *testing.T) {
	env := mgmttest.Start(t, mgmttest.Options{})
	svc := env.CreateService(t, "sub1", "rg1", "svc1")
	r := env.Must(t, []int{201}, "PUT", svc+"/apis/echo", map[string]any{"properties": map[string]any{
		"displayName": "Echo", "type": "websocket", "serviceUrl": "wss://echo.example.com", "path": "echo"}})
	if got := r.Header.Get("ETag"); got == "" {
		t.Fatal("no ETag on PUT")
	}
	env.Must(t, []int{200}, "GET", svc+"/apis/echo/operations/onHandshake", nil)
}
