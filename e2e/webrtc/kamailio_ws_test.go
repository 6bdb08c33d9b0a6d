//go:build unix

package webrtc

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// TestBrowserJsSIPThroughKamailioWebSocket is the REFERENCE run of the
// same page, driver and checks with an established proxy, not Viaduct, as
// the WebSocket server: Kamailio's websocket module (with tls and xhttp)
// on a wss listener, registrar and proxy at once, as its documentation's
// WebSocket example does it (nathelper's fix_nated_register and
// add_contact_alias for the browsers' ".invalid" contacts). It checks the
// harness itself, and shows how a proxy that terminates SIP over
// WebSocket behaves with JsSIP; the test's MESSAGE from carol comes in
// over Kamailio's UDP listener.
func TestBrowserJsSIPThroughKamailioWebSocket(t *testing.T) {
	b := requireBrowser(t)
	page := servePage(t, b)
	k := startKamailioWS(t, page.URL)
	h := &harness{t: t, logs: map[string]func() string{"kamailio": k.log}}
	h.run(b, page.URL, fmt.Sprintf("wss://127.0.0.1:%d", k.wssPort), k.udp)
	kl := k.log()
	for _, want := range []string{"ws-proxy: registered sip:alice@" + domain, "ws-proxy: registered sip:bob@" + domain,
		"ws-proxy: request MESSAGE bob wss", "ws-proxy: request MESSAGE bob udp", "ws-proxy: request INVITE bob wss"} {
		if !strings.Contains(kl, want) {
			t.Errorf("Kamailio's log lacks %q", want)
		}
	}
}

// kamailioWSConfig is Kamailio as a WebSocket registrar and proxy. It logs
// "ws-proxy: ready" once it takes requests, "ws-proxy: registered AOR"
// and "ws-proxy: request METHOD RURI-USER PROTO CALL-ID". It accepts
// WebSocket handshakes from the page's origin only. Printf verbs: the UDP
// port, the TLS (wss) port, the tls.cfg path, the origin.
const kamailioWSConfig = `#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=2
dns=no
rev_dns=no
auto_aliases=no
enable_tls=yes
tcp_accept_no_cl=yes
listen=udp:127.0.0.1:%[1]d
listen=tls:127.0.0.1:%[2]d

loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nathelper.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"

modparam("tls", "config", "%[3]s")
modparam("usrloc", "db_mode", 0)
modparam("nathelper|registrar", "received_avp", "$avp(RECEIVED)")

event_route[core:worker-one-init] {
	xlog("L_NOTICE", "ws-proxy: ready\n");
}

event_route[xhttp:request] {
	set_reply_close();
	set_reply_no_connect();
	if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm == "GET") {
		if ($hdr(Origin) != "%[4]s") {
			xlog("L_NOTICE", "ws-proxy: origin $hdr(Origin) refused\n");
			xhttp_reply("403", "Forbidden", "", "");
			exit;
		}
		if (ws_handle_handshake()) {
			exit;
		}
	}
	xhttp_reply("404", "Not Found", "", "");
}

request_route {
	xlog("L_NOTICE", "ws-proxy: request $rm $rU $pr $ci\n");
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	force_rport();
	# 64: the request came over a WebSocket, from a ".invalid" Contact.
	if (nat_uac_test("64")) {
		if (is_method("REGISTER")) {
			fix_nated_register();
		} else if (!add_contact_alias()) {
			sl_send_reply("400", "Bad Contact");
			exit;
		}
	}
	if (has_totag()) {
		if (loose_route()) {
			if ($du == "") {
				handle_ruri_alias();
			}
			t_on_reply("WS_REPLY");
			t_relay();
			exit;
		}
		if (is_method("ACK") && t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	t_check_trans();
	if (is_method("REGISTER")) {
		if (!save("location")) {
			sl_reply_error();
			exit;
		}
		xlog("L_NOTICE", "ws-proxy: registered $tu\n");
		exit;
	}
	record_route();
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	t_on_reply("WS_REPLY");
	t_relay();
}

# A WebSocket callee's Contact gets the alias of its connection, for the
# caller's in-dialog requests.
onreply_route[WS_REPLY] {
	if (nat_uac_test("64")) {
		add_contact_alias();
	}
}
`

// kamailioTLSConfig: the server's certificate; no client certificates.
// Printf verbs: certificate and key files.
const kamailioTLSConfig = `[server:default]
method = TLSv1.2+
certificate = %s
private_key = %s
verify_certificate = no
require_certificate = no
`

// kamailioWS is a running Kamailio of kamailioWSConfig.
type kamailioWS struct {
	udp     netip.AddrPort
	wssPort int
	logPath string
}

func (k *kamailioWS) log() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// startKamailioWS starts Kamailio with kamailioWSConfig (its own process
// group, killed at cleanup) and returns once it is ready and its wss port
// takes connections. It needs the tls, xhttp and websocket modules.
func startKamailioWS(t *testing.T, origin string) *kamailioWS {
	t.Helper()
	kamailio, modules := testenv.Kamailio(t)
	testenv.KamailioModule(t, modules, "tls.so", "kamailio-tls-modules")
	testenv.KamailioModule(t, modules, "websocket.so", "kamailio-websocket-modules")
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	k := &kamailioWS{udp: testenv.FreePort(t), wssPort: freeTCPPort(t), logPath: filepath.Join(dir, "kamailio.out")}
	tlsCfg := filepath.Join(dir, "tls.cfg")
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(tlsCfg, fmt.Appendf(nil, kamailioTLSConfig, cert, key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, kamailioWSConfig, k.udp.Port(), k.wssPort, tlsCfg, origin), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-DD", "-E", "-f", cfg, "-w", dir, "-Y", dir, "-m", "64", "-M", "16"}
	if modules != "" {
		args = append(args, "-L", modules)
	}
	cmd := exec.Command(kamailio, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	testenv.StartLogged(t, cmd, k.logPath)
	p := watch(t, cmd, true)
	waitListening(t, k.wssPort, p, func(err error) { t.Fatalf("kamailio exited (%v):\n%s", err, k.log()) })
	testenv.WaitFor(t, "kamailio ready", 10*time.Second, func() bool { return strings.Contains(k.log(), "ws-proxy: ready") })
	return k
}
