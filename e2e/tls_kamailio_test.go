package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// Issue #15 with an independent TLS peer: Kamailio's tls module (OpenSSL)
// as Viaduct's TLS upstream, and as a TLS client in front of Viaduct.

// kamailioTLSConfig is Kamailio's tls module configuration: the test CA's
// certificates on both sides, the peer's certificate verified, and
// required from clients when requireClient. Printf verbs: the certificate,
// key and CA files, then "yes" or "no" for requireClient.
const kamailioTLSConfig = `[server:default]
method = TLSv1.2+
certificate = %[1]s
private_key = %[2]s
ca_list = %[3]s
verify_certificate = %[4]s
require_certificate = %[4]s

[client:default]
method = TLSv1.2+
certificate = %[1]s
private_key = %[2]s
ca_list = %[3]s
verify_certificate = yes
require_certificate = yes
`

// kamailioTLSHead is the start of every kamailio.cfg here: TLS on, the
// listeners given, the modules both routes use. It logs
// "e2e: request METHOD PROTO CALL-ID" for every request it receives.
// Printf verbs: the listen lines, the tls.cfg path.
const kamailioTLSHead = `#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
dns=no
rev_dns=no
auto_aliases=no
enable_tls=yes
%s

loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("tls", "config", "%s")
`

// kamailioUASRoute answers every request statelessly: INVITE with 200 and
// a Contact on its TLS listener, ACK absorbed, anything else (BYE,
// OPTIONS) 200. Printf verb: the TLS port.
const kamailioUASRoute = `
request_route {
	xlog("L_NOTICE", "e2e: request $rm $pr $ci\n");
	if (is_method("ACK")) {
		exit;
	}
	if (is_method("INVITE")) {
		append_to_reply("Contact: <sip:kamailio@127.0.0.1:%d;transport=tls>\r\n");
	}
	sl_send_reply("200", "OK");
	exit;
}
`

// kamailioRelayRoute forwards every request statelessly over TLS to
// Viaduct's tls: listener; the responses go back by their Via. Printf verb:
// that listener.
const kamailioRelayRoute = `
request_route {
	xlog("L_NOTICE", "e2e: request $rm $pr $ci\n");
	$du = "sip:%s;transport=tls";
	if (!forward()) {
		sl_send_reply("500", "Forward Failed");
	}
	exit;
}
`

// startKamailio writes tls.cfg and kamailio.cfg (head with listen and the
// route) into dir/name and starts kamailio in the foreground. It waits
// until its TLS listener tlsPort answers a handshake with the certificate
// of cert, verified against the test CA.
func (l *tlsLab) startKamailio(name string, cert issued, requireClient bool, listen string, tlsPort int, route string) {
	l.t.Helper()
	kamailio, modules := kamailioTLS(l.t)
	run := filepath.Join(l.dir, name)
	if err := os.Mkdir(run, 0o755); err != nil {
		l.t.Fatal(err)
	}
	yesNo := map[bool]string{true: "yes", false: "no"}[requireClient]
	tlsCfg := writeFile(l.t, run, "tls.cfg", fmt.Sprintf(kamailioTLSConfig, cert.certFile, cert.keyFile, l.ca.file, yesNo))
	cfg := writeFile(l.t, run, "kamailio.cfg", fmt.Sprintf(kamailioTLSHead, listen, tlsCfg)+route)
	args := []string{"-DD", "-E", "-f", cfg, "-w", run, "-Y", run, "-m", "64", "-M", "16"}
	if modules != "" {
		args = append(args, "-L", modules)
	}
	p := start(l.t, l.dir, name, kamailio, args...)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tlsPort))
	waitFor(l.t, name+" serving TLS", 15*time.Second, func() bool {
		if p.ended() {
			l.t.Fatalf("%s exited:\n%s", name, l.output(name))
		}
		serial, err := tryServedSerial(l.ca, addr, cert)
		if err != nil {
			return false
		}
		if serial.Cmp(cert.serial) != 0 {
			l.t.Fatalf("%s serves serial %v, want %v", name, serial, cert.serial)
		}
		return true
	})
}

// kamailioTLS returns the kamailio binary and its modules directory,
// which must hold tls.so (see testenv.Kamailio, testenv.KamailioModule).
func kamailioTLS(t *testing.T) (bin, modules string) {
	t.Helper()
	bin, modules = testenv.Kamailio(t)
	testenv.KamailioModule(t, modules, "tls.so", "kamailio-tls-modules")
	return bin, modules
}

var kamailioRequest = regexp.MustCompile(`e2e: request (\S+) (\S+) (\S+)`)

// kamailioRequests counts the requests Kamailio name logged by method and
// transport ("INVITE tls"), Viaduct's probes and tlsOptions' left out.
func (l *tlsLab) kamailioRequests(name string) map[string]int {
	n := map[string]int{}
	for _, m := range kamailioRequest.FindAllStringSubmatch(l.output(name), -1) {
		if strings.HasPrefix(m[3], "vdp-") || strings.HasPrefix(m[3], "e2e-options-") {
			continue
		}
		n[m[1]+" "+m[2]]++
	}
	return n
}

// TestTLSKamailioUpstream: viaduct-load's UAC over UDP through Viaduct to
// Kamailio as a TLS upstream (tls:127.0.0.1:PORT, verified against the
// test CA as tls_server_name localhost). Kamailio requires and verifies
// Viaduct's client certificate (the tls block's cert_file, presented when
// a peer asks). Every call completes, and Kamailio received every INVITE,
// ACK and BYE over TLS.
func TestTLSKamailioUpstream(t *testing.T) {
	kamailioTLS(t)
	if testing.Short() {
		t.Skip("-short")
	}
	begin := time.Now()
	l := newTLSLab(t)
	viaductCert, kamCert := l.ca.issue("viaduct"), l.ca.issue("kamailio")
	kport := freePort(t, "tcp")
	l.startKamailio("kamailio", kamCert, true, fmt.Sprintf("listen=tls:127.0.0.1:%d", kport), kport, fmt.Sprintf(kamailioUASRoute, kport))

	// Kamailio requires a client certificate (so that Viaduct's below is
	// checked): a client without one is refused, one with it served.
	kaddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(kport))
	if status, err := tlsOptions(l.ca, kaddr, issued{}); err == nil {
		t.Fatalf("Kamailio served a client without a certificate: %q", status)
	}
	if status, err := tlsOptions(l.ca, kaddr, viaductCert); err != nil || status != "SIP/2.0 200 OK" {
		t.Fatalf("Kamailio with a client certificate of the CA: %q, %v; want SIP/2.0 200 OK", status, err)
	}

	l.startViaductWith(
		fmt.Sprintf("  - {address: \"tls:127.0.0.1:%d\", id: kamailio, tls_server_name: localhost}\n", kport),
		tlsBlock(viaductCert, "  ca_file: "+l.ca.file+"\n"))
	const calls, rate = 200, 100
	rep := l.runUAC("uac", "--target", l.udpListen.String(), "--sources", "1", "--concurrency", "1",
		"--total", strconv.Itoa(calls), "--rate", strconv.Itoa(rate), "--timeout", "8s", "--drain", "10s")
	if rep.Completed != calls || rep.Failed != 0 {
		t.Errorf("uac: %d of %d calls completed, %d failed %v", rep.Completed, calls, rep.Failed, rep.FailedBy)
	}
	var seen map[string]int
	waitFor(t, "Kamailio to log every request", 10*time.Second, func() bool {
		seen = l.kamailioRequests("kamailio")
		return seen["INVITE tls"] >= calls && seen["ACK tls"] >= calls && seen["BYE tls"] >= calls
	})
	if len(seen) != 3 || seen["INVITE tls"] != calls || seen["ACK tls"] != calls || seen["BYE tls"] != calls {
		t.Errorf("Kamailio received %v, want %d each of INVITE, ACK and BYE over tls", seen, calls)
	}
	checkEveryRequestBalanced(t, l.adminURL, calls, 3*calls)
	if n := metricSum(t, l.adminURL, "viaduct_stream_dialed_total", `transport="tls"`); n < 1 {
		t.Errorf("viaduct_stream_dialed_total{transport=tls} %v, want at least 1", n)
	}
	t.Logf("Viaduct dialled %v TLS connections; total %v", metricSum(t, l.adminURL, "viaduct_stream_dialed_total", `transport="tls"`), time.Since(begin))
}

// TestTLSKamailioClient: viaduct-load's UAC over UDP to Kamailio, which
// forwards every request over TLS (its client side verifying Viaduct's
// certificate against the test CA) to Viaduct's tls: listener, and Viaduct
// to two viaduct-load UASs over UDP. Every call completes, both upstreams
// take calls, and Viaduct accepted Kamailio's TLS connections and no
// handshake failed.
func TestTLSKamailioClient(t *testing.T) {
	kamailioTLS(t)
	if testing.Short() {
		t.Skip("-short")
	}
	begin := time.Now()
	l := newTLSLab(t)
	viaductCert, kamCert := l.ca.issue("viaduct"), l.ca.issue("kamailio")
	uas1, a1 := l.startUAS("uas1")
	uas2, a2 := l.startUAS("uas2")
	l.startViaduct([]string{a1.String(), a2.String()}, tlsBlock(viaductCert, ""))
	kudp, ktls := freePort(t, "udp"), freePort(t, "tcp")
	l.startKamailio("kamailio", kamCert, false, fmt.Sprintf("listen=udp:127.0.0.1:%d\nlisten=tls:127.0.0.1:%d", kudp, ktls), ktls,
		fmt.Sprintf(kamailioRelayRoute, l.tlsListen))

	const calls, rate = 200, 100
	rep := l.runUAC("uac", "--target", fmt.Sprintf("127.0.0.1:%d", kudp), "--sources", "1", "--concurrency", "1",
		"--total", strconv.Itoa(calls), "--rate", strconv.Itoa(rate), "--timeout", "8s", "--drain", "10s")
	if rep.Completed != calls || rep.Failed != 0 {
		t.Errorf("uac: %d of %d calls completed, %d failed %v", rep.Completed, calls, rep.Failed, rep.FailedBy)
	}
	var seen map[string]int
	waitFor(t, "Kamailio to log every request", 10*time.Second, func() bool {
		seen = l.kamailioRequests("kamailio")
		return seen["INVITE udp"] >= calls && seen["ACK udp"] >= calls && seen["BYE udp"] >= calls
	})
	if len(seen) != 3 || seen["INVITE udp"] != calls || seen["ACK udp"] != calls || seen["BYE udp"] != calls {
		t.Errorf("Kamailio received %v, want %d each of INVITE, ACK and BYE over udp", seen, calls)
	}
	if n := metricSum(t, l.adminURL, "viaduct_stream_accepted_total", `transport="tls"`); n < 1 {
		t.Errorf("viaduct_stream_accepted_total{transport=tls} %v, want Kamailio's connections", n)
	}
	if n := metricSum(t, l.adminURL, "viaduct_stream_messages_total", `transport="tls"`, `direction="in"`); n < 3*calls {
		t.Errorf("viaduct_stream_messages_total{transport=tls,direction=in} %v, want at least %d (INVITE, ACK, BYE per call)", n, 3*calls)
	}
	if n := metricSum(t, l.adminURL, "viaduct_tls_handshake_failures_total"); n != 0 {
		t.Errorf("viaduct_tls_handshake_failures_total %v, want 0", n)
	}
	checkEveryRequestBalanced(t, l.adminURL, calls, 3*calls)
	// The responses went back over Kamailio's connections: Viaduct opened
	// none of its own toward Kamailio's TLS listener.
	if n := metricSum(t, l.adminURL, "viaduct_stream_dialed_total", `transport="tls"`); n != 0 {
		t.Errorf("viaduct_stream_dialed_total{transport=tls} %v, want 0", n)
	}
	per := []int{l.stopUAS(uas1, "uas1"), l.stopUAS(uas2, "uas2")}
	if per[0] == 0 || per[1] == 0 || per[0]+per[1] != calls {
		t.Errorf("INVITEs per upstream %v, want both > 0 and %d in all", per, calls)
	}
	t.Logf("INVITEs per upstream %v; Viaduct accepted %v TLS connections; total %v", per,
		metricSum(t, l.adminURL, "viaduct_stream_accepted_total", `transport="tls"`), time.Since(begin))
}
