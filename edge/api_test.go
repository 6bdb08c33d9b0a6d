package edge

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// apiServer serves g's routes as cmd/viaduct mounts them.
func apiServer(t *testing.T, g *Guard) *httptest.Server {
	mux := http.NewServeMux()
	for p, h := range g.Routes() {
		mux.Handle(p, h)
	}
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// do sends a request without a token to the edge's routes.
func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return testenv.HTTPDo(t, method, url, "", body)
}

func TestBansAPI(t *testing.T) {
	g := newGuard(t, Config{})
	s := apiServer(t, g)
	w := newWorker(g)
	code, body := do(t, "POST", s.URL+"/api/v1/bans", `{"prefix": "192.0.2.0/24", "ttl": "2h", "reason": "brute force"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"prefix": "192.0.2.0/24"`) || !strings.Contains(body, `"origin": "manual"`) {
		t.Fatalf("POST: %d %s", code, body)
	}
	if w.send(request("REGISTER", ""), "192.0.2.9:5060") {
		t.Error("the banned prefix reached the core")
	}
	for _, bad := range []string{`{"prefix": "192.0.2.0/33"}`, `{"prefix": "192.0.2.1", "ttl": "soon"}`, `{"prefix": "192.0.2.1", "ttl": "0s"}`, `{"prefx": "192.0.2.1"}`, `nope`} {
		if code, body := do(t, "POST", s.URL+"/api/v1/bans", bad); code != http.StatusBadRequest || !strings.Contains(body, "error") {
			t.Errorf("POST %s: %d %s, want 400 with the reason", bad, code, body)
		}
	}
	code, body = do(t, "GET", s.URL+"/api/v1/bans", "")
	var list struct{ Bans []Ban }
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != 200 || len(list.Bans) != 1 || list.Bans[0].TTLSeconds < 7000 || list.Bans[0].Reason != "brute force" {
		t.Fatalf("GET: %d %s (%v)", code, body, err)
	}
	if code, _ := do(t, "DELETE", s.URL+"/api/v1/bans/192.0.2.0/24", ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d", code)
	}
	if code, _ := do(t, "DELETE", s.URL+"/api/v1/bans/192.0.2.0/24", ""); code != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", code)
	}
	if !w.send(request("REGISTER", ""), "192.0.2.9:5060") {
		t.Error("the lifted ban still applied")
	}
	if code, body := do(t, "POST", s.URL+"/api/v1/bans", `{"prefix": "2001:db8::/32"}`); code != http.StatusCreated || !strings.Contains(body, `"ttl_seconds": 600`) {
		t.Errorf("POST without ttl: %d %s, want bans.ttl (600 s)", code, body)
	}
}

func TestTopAndStatusAPI(t *testing.T) {
	g := newGuard(t, Config{})
	s := apiServer(t, g)
	w := newWorker(g)
	w.sendN(request("OPTIONS", ""), "192.0.2.1:5060", 7)
	w.send(request("OPTIONS", "sipvicious"), "192.0.2.2:5060")
	code, body := do(t, "GET", s.URL+"/api/v1/edge/top?n=5", "")
	if code != 200 || !strings.Contains(body, `"source": "192.0.2.1/32"`) || !strings.Contains(body, `"rate": 7`) {
		t.Errorf("top: %d %s", code, body)
	}
	if code, _ := do(t, "GET", s.URL+"/api/v1/edge/top?n=0", ""); code != http.StatusBadRequest {
		t.Errorf("top?n=0: %d, want 400", code)
	}
	code, body = do(t, "GET", s.URL+"/api/v1/edge", "")
	if code != 200 || !strings.Contains(body, `"reason": "scanner"`) || !strings.Contains(body, `"bans_active": 1`) {
		t.Errorf("status: %d %s", code, body)
	}
}
