package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

var _ Upstreams = (*health.Checker)(nil)

// setup wires the real parts: a fast path engine (not started: no probe is
// sent, the targets are never probed), its balancer pool, a health checker
// over both, and the admin API in front on a loopback HTTP server.
func setup(t *testing.T, token string) (*httptest.Server, *balancer.Pool, *health.Checker) {
	t.Helper()
	srv, pool, chk, _ := setupWith(t, Options{Token: token})
	return srv, pool, chk
}

// setupWith is setup with the Options o (Upstreams set to the checker) and
// returns the Handler too.
func setupWith(t *testing.T, o Options) (*httptest.Server, *balancer.Pool, *health.Checker, *Handler) {
	t.Helper()
	ups := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5071"), netip.MustParseAddrPort("[::1]:5072")}
	eng, err := fastpath.New(fastpath.Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Transport: udp.Bind(udp.ServerConfig{}, nil), Upstreams: ups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	never := true
	cfg := health.Config{Settings: health.Settings{NeverProbe: &never}}
	for _, u := range ups {
		cfg.Targets = append(cfg.Targets, health.Target{Addr: u})
	}
	chk, err := health.New(cfg, eng, eng.Pool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Upstreams = chk
	h := New(o)
	h.Handle("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "extra") }))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, eng.Pool(), chk, h
}

// do sends a request without a body to the admin API.
func do(t *testing.T, method, u, token string) (int, []byte) {
	t.Helper()
	code, b := testenv.HTTPDo(t, method, u, token, "")
	return code, []byte(b)
}

func TestUpstreamsAdminStates(t *testing.T) {
	srv, pool, chk := setup(t, "")
	const v4, v6 = "udp:127.0.0.1:5071", "udp:[::1]:5072"

	code, body := do(t, "GET", srv.URL+"/api/v1/upstreams", "")
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	var list UpstreamList
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Upstreams) != 2 || list.Upstreams[0].ID != v4 || list.Upstreams[1].ID != v6 ||
		list.Upstreams[0].Address != "127.0.0.1:5071" || list.Upstreams[0].Health != "up" ||
		list.Upstreams[0].Admin != "enabled" || list.Upstreams[0].Probed {
		t.Errorf("list: %s", body)
	}

	admin := func(id string) balancer.AdminState {
		tg, ok := pool.Table().ByID(id)
		if !ok {
			t.Fatalf("pool lacks %s", id)
		}
		return tg.Admin
	}
	for _, step := range []struct {
		action string
		want   balancer.AdminState
	}{
		{"drain", balancer.Draining},
		{"disable", balancer.Disabled},
		{"enable", balancer.Enabled},
		{"disable", balancer.Disabled},
	} {
		code, body := do(t, "POST", srv.URL+"/api/v1/upstreams/"+url.PathEscape(v6)+"/"+step.action, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", step.action, code, body)
		}
		var u Upstream
		if err := json.Unmarshal(body, &u); err != nil {
			t.Fatal(err)
		}
		if u.ID != v6 || u.Admin != step.want.String() || u.Health != "up" {
			t.Errorf("%s answered %s", step.action, body)
		}
		if got := admin(v6); got != step.want {
			t.Errorf("after %s the pool says %v", step.action, got)
		}
		if s, _ := chk.StatusOf(v6); s.Admin != step.want {
			t.Errorf("after %s the checker says %v", step.action, s.Admin)
		}
	}
	if admin(v4) != balancer.Enabled {
		t.Errorf("the other target changed")
	}

	code, body = do(t, "GET", srv.URL+"/api/v1/upstreams/"+url.PathEscape(v4), "")
	if code != 200 || !strings.Contains(string(body), `"id": "udp:127.0.0.1:5071"`) {
		t.Errorf("get one: %d %s", code, body)
	}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/api/v1/upstreams/nope/drain", 404},
		{"GET", "/api/v1/upstreams/nope", 404},
		{"GET", "/api/v1/upstreams/" + url.PathEscape(v4) + "/drain", 405},
		{"POST", "/api/v1/upstreams/" + url.PathEscape(v4) + "/reboot", 404},
		{"DELETE", "/api/v1/upstreams", 405},
	} {
		code, body := do(t, tc.method, srv.URL+tc.path, "")
		if code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
		}
	}
	_, body = do(t, "POST", srv.URL+"/api/v1/upstreams/nope/drain", "")
	if string(body) != `{"error":"unknown upstream \"nope\""}`+"\n" {
		t.Errorf("404 body %s", body)
	}
	if code, body := do(t, "GET", srv.URL+"/extra", ""); code != 200 || string(body) != "extra" {
		t.Errorf("added handler: %d %s", code, body)
	}
}

func TestToken(t *testing.T) {
	srv, pool, _ := setup(t, "s3cret")
	for _, path := range []string{"/api/v1/upstreams", "/extra"} {
		if code, _ := do(t, "GET", srv.URL+path, ""); code != 401 {
			t.Errorf("GET %s without token: %d", path, code)
		}
		if code, _ := do(t, "GET", srv.URL+path, "wrong"); code != 401 {
			t.Errorf("GET %s with a wrong token: %d", path, code)
		}
		if code, _ := do(t, "GET", srv.URL+path, "s3cret"); code != 200 {
			t.Errorf("GET %s with the token: %d", path, code)
		}
	}
	if code, _ := do(t, "POST", srv.URL+"/api/v1/upstreams/udp:127.0.0.1:5071/drain", ""); code != 401 {
		t.Errorf("POST without token: %d", code)
	}
	if tg, _ := pool.Table().ByID("udp:127.0.0.1:5071"); tg.Admin != balancer.Enabled {
		t.Errorf("an unauthorized POST changed the admin state")
	}
}
