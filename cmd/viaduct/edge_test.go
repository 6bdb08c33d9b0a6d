package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// sendFrom sends a request with User-Agent ua to proxy from a socket on
// 127.0.0.2 (127.0.0.1 is the upstreams' address, and upstreams are always
// trusted by the edge).
func sendFrom(t *testing.T, proxy, method, ua string, n int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp4", proxy)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		req := fmt.Sprintf("%s sip:100@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-e%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:a@example.com>;tag=e1\r\nTo: <sip:100@example.com>\r\nCall-ID: edge-%d@%s\r\nCSeq: 1 %s\r\nUser-Agent: %s\r\nContent-Length: 0\r\n\r\n",
			method, c.LocalAddr(), i, i, method, method, ua)
		if _, err := c.WriteToUDP([]byte(req), dst); err != nil {
			t.Fatal(err)
		}
	}
}

// The edge in the running binary: the scanner drop before the core, its
// metrics, the bans API behind the token, and a reload that applies the
// edge section, refuses a bad one by its field and keeps the bans.
func TestEdgeWiring(t *testing.T) {
	up := newSIPUpstream(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	const token = "edge-test-token"
	head := fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nhealth: {enabled: false}\nadmin: {listen: \"%s\", token: %s}\nupstreams: [\"%s\"]\n", proxy, adm, token, up.addr)
	path := writeFile(t, "v.yaml", head)
	startInProcess(t, procHooks{}, adm.String(), "--config", path)
	base := "http://" + adm.String()

	sendFrom(t, proxy.String(), "OPTIONS", "Linphone/5.2", 3)
	waitFor(t, 5*time.Second, func() bool { return up.received("OPTIONS") == 3 }, "3 OPTIONS at the upstream")
	sendFrom(t, proxy.String(), "OPTIONS", "friendly-scanner", 1)
	waitFor(t, 5*time.Second, func() bool {
		_, m := testenv.HTTPDo(t, "GET", base+"/metrics", token, "")
		return strings.Contains(m, `viaduct_edge_dropped_total{reason="scanner",rule="friendly-scanner"} 1`)
	}, "the scanner's drop in /metrics")
	if up.received("OPTIONS") != 3 {
		t.Error("the scanner's OPTIONS reached the upstream")
	}
	if code, _ := testenv.HTTPDo(t, "GET", base+"/api/v1/bans", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/bans without the token: %d, want 401", code)
	}
	code, body := testenv.HTTPDo(t, "GET", base+"/api/v1/bans", token, "")
	if code != 200 || !strings.Contains(body, `"prefix": "127.0.0.2/32"`) || !strings.Contains(body, `"origin": "scanner"`) {
		t.Errorf("GET /api/v1/bans: %d %s, want the scanner's ban", code, body)
	}
	if code, body := testenv.HTTPDo(t, "POST", base+"/api/v1/bans", token, `{"prefix": "192.0.2.0/24", "ttl": "1h"}`); code != http.StatusCreated {
		t.Errorf("POST /api/v1/bans: %d %s", code, body)
	}

	// A reload: a bad edge section is refused by its field.
	write := func(s string) {
		if err := os.WriteFile(path, []byte(head+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reload := func() (int, reloadResult) {
		code, body := testenv.HTTPDo(t, "POST", base+"/api/v1/reload", token, "")
		var res reloadResult
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatalf("reload answer %d %q: %v", code, body, err)
		}
		return code, res
	}
	write("edge: {limits: {invite: {rate: -1}}}\n")
	if code, res := reload(); code != 422 || res.Field != "edge.limits.invite.rate" {
		t.Errorf("bad edge section: %d %+v, want 422 naming edge.limits.invite.rate", code, res)
	}
	// A good one applies (the scanner rule off) and the bans stay.
	write("edge: {scanners: {mode: \"off\"}, limits: {table_size: 4096}}\n")
	code, res := reload()
	if code != 200 || len(res.RestartRequired) != 1 || res.RestartRequired[0] != "edge.limits.table_size" {
		t.Errorf("reload: %d %+v, want applied with edge.limits.table_size named as needing a restart", code, res)
	}
	code, body = testenv.HTTPDo(t, "GET", base+"/api/v1/bans", token, "")
	if !strings.Contains(body, "127.0.0.2/32") || !strings.Contains(body, "192.0.2.0/24") {
		t.Errorf("bans after the reload: %d %s", code, body)
	}
	if code, _ := testenv.HTTPDo(t, "DELETE", base+"/api/v1/bans/127.0.0.2/32", token, ""); code != http.StatusNoContent {
		t.Errorf("DELETE the scanner's ban: %d", code)
	}
	sendFrom(t, proxy.String(), "OPTIONS", "friendly-scanner", 1)
	waitFor(t, 5*time.Second, func() bool { return up.received("OPTIONS") == 4 }, "the scanner's OPTIONS, rule off, at the upstream")
}

// A gateway cap end to end: the calls within the cap reach the upstream
// untouched, the next new call is answered 503 with Retry-After by the
// core, and an in-dialog request (To tag) is not a new call.
func TestEdgeGatewayCap(t *testing.T) {
	up := newSIPUpstream(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	cfg := fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nhealth: {enabled: false}\nadmin: {listen: \"%s\"}\nupstreams: [{address: \"%s\", id: carrier}]\n"+
		"edge: {gateways: {retry_after: 4s, caps: [{upstream: carrier, cps: 0.01, burst: 2}]}}\n", proxy, adm, up.addr)
	startInProcess(t, procHooks{}, adm.String(), "--config", writeFile(t, "v.yaml", cfg))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := net.UDPAddrFromAddrPort(proxy)
	send := func(i int, toTag string) {
		req := fmt.Sprintf("INVITE sip:100@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-g%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:a@example.com>;tag=g1\r\nTo: <sip:100@example.com>%s\r\nCall-ID: gw-%d@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
			c.LocalAddr(), i, toTag, i)
		if _, err := c.WriteToUDP([]byte(req), dst); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		send(i, "")
	}
	waitFor(t, 5*time.Second, func() bool { return up.received("INVITE") == 2 }, "2 INVITEs under the cap at the upstream")
	send(2, "")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no 503 for the call over the cap: %v", err)
		}
		resp := string(buf[:n])
		if !strings.Contains(resp, "Call-ID: gw-2@x") {
			continue // a 200 of the calls under the cap
		}
		if !strings.HasPrefix(resp, "SIP/2.0 503 ") || !strings.Contains(resp, "\r\nRetry-After: 4\r\n") {
			t.Fatalf("answer to the call over the cap:\n%s", resp)
		}
		break
	}
	send(3, ";tag=callee") // in dialog: not a new call
	waitFor(t, 5*time.Second, func() bool { return up.received("INVITE") == 3 }, "the re-INVITE at the upstream")
}

// With edge.bans.state_file, a ban added through the API outlives a
// restart: the stopping process saves the list, the next one puts it back.
func TestEdgeBansSurviveRestart(t *testing.T) {
	up := newSIPUpstream(t)
	const token = "edge-test-token"
	state := filepath.Join(t.TempDir(), "bans.json")
	run := func(t *testing.T, check func(base string)) {
		proxy, adm := freePort(t), freeTCPPort(t)
		cfg := fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nhealth: {enabled: false}\nadmin: {listen: \"%s\", token: %s}\nupstreams: [\"%s\"]\nedge: {bans: {state_file: %q}}\n",
			proxy, adm, token, up.addr, state)
		startInProcess(t, procHooks{}, adm.String(), "--config", writeFile(t, "v.yaml", cfg))
		check("http://" + adm.String())
	}
	t.Run("ban", func(t *testing.T) {
		run(t, func(base string) {
			if code, body := testenv.HTTPDo(t, "POST", base+"/api/v1/bans", token, `{"prefix": "192.0.2.0/24", "ttl": "1h", "reason": "abuse desk"}`); code != http.StatusCreated {
				t.Fatalf("POST /api/v1/bans: %d %s", code, body)
			}
		})
	}) // its cleanup stopped that process
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no ban list saved at shutdown: %v", err)
	}
	t.Run("after restart", func(t *testing.T) {
		run(t, func(base string) {
			code, body := testenv.HTTPDo(t, "GET", base+"/api/v1/bans", token, "")
			if code != http.StatusOK || !strings.Contains(body, `"192.0.2.0/24"`) || !strings.Contains(body, "abuse desk") {
				t.Errorf("bans after the restart: %d %s, want the ban of 192.0.2.0/24", code, body)
			}
		})
	})
}
