package admin

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// GET /api/v1/connections and the status page show the connections the
// Connections option reports; without it the endpoint does not exist.
func TestConnections(t *testing.T) {
	c := Connections{
		Listeners: []ListenerConnections{{Transport: "tcp", Listen: "192.0.2.10:5060", In: 42, Out: 1}},
		Upstreams: []UpstreamConnections{{ID: "tls:198.51.100.5:5061", Address: "198.51.100.5:5061", Transport: "tls", Open: 1}},
	}
	h := New(Options{Connections: func() Connections { return c }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/connections", nil))
	var got Connections
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v: %s", rec.Code, err, rec.Body)
	}
	if len(got.Listeners) != 1 || got.Listeners[0] != c.Listeners[0] || len(got.Upstreams) != 1 || got.Upstreams[0] != c.Upstreams[0] {
		t.Errorf("got %+v, want %+v", got, c)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	if !strings.Contains(page, "<h2>Connections</h2>") || !strings.Contains(page, `<td class="n">42</td>`) ||
		!strings.Contains(page, "upstream tls:198.51.100.5:5061") {
		t.Errorf("status page without the connections:\n%s", page)
	}
	rec = httptest.NewRecorder()
	New(Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/connections", nil))
	if rec.Code != 404 {
		t.Errorf("without Connections: %d, want 404", rec.Code)
	}
}
