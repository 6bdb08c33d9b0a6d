package edge

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

func TestScannerUserAgentsAreDroppedAndBanned(t *testing.T) {
	g := newGuard(t, Config{})
	w := newWorker(g)
	for i, ua := range []string{"friendly-scanner", "SIPVicious/0.3.4", "sipcli/v1.8", "VaxSIPUserAgent/3.1", "pplsip"} {
		src := fmt.Sprintf("192.0.2.%d:5060", i+1)
		if w.send(request("OPTIONS", ua), src) {
			t.Errorf("User-Agent %q reached the core", ua)
		}
		if !strings.HasPrefix(g.Bans().List()[0].Origin, "scanner") {
			t.Errorf("%q: no scanner ban", ua)
		}
	}
	if got := g.Stats().Dropped("scanner", "sipvicious"); got != 1 {
		t.Errorf("scanner/sipvicious drops = %d, want 1", got)
	}
	if n := len(g.Bans().List()); n != 5 {
		t.Errorf("%d bans, want 5", n)
	}
	if !w.send(request("OPTIONS", "Linphone/5.2 (belle-sip/5.2)"), "198.51.100.1:5060") {
		t.Error("a phone's User-Agent was dropped")
	}
}

func TestUserAgentHeaderNameInAnyCase(t *testing.T) {
	msg := []byte("OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nuser-AGENT :  sipvicious \r\nContact: <sip:a@b>\r\n\r\nbody")
	if got := string(userAgent(msg)); got != "sipvicious" {
		t.Errorf("userAgent = %q", got)
	}
	for _, name := range []string{"User-Agent", "user-agent", "USER-AGENT", "User-agent"} {
		m := []byte("OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nTo: <sip:agent@b>\r\n" + name + ":sipcli\r\n\r\n")
		if got := string(userAgent(m)); got != "sipcli" {
			t.Errorf("%s: userAgent = %q", name, got)
		}
	}
	body := []byte("OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nUser-Agentx: no\r\n\r\nUser-Agent: sipvicious\r\n")
	if got := userAgent(body); got != nil && inHeaders(body, got) {
		t.Errorf("userAgent read %q past the headers", got)
	}
	g := newGuard(t, Config{})
	if !newWorker(g).send(body, "192.0.2.1:5060") {
		t.Error("a scanner's name in the body dropped the request")
	}
	for _, m := range []string{"OPTIONS sip:a SIP/2.0\r\nX-User-Agent: sipvicious\r\n\r\n", "OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n"} {
		if got := userAgent([]byte(m)); got != nil {
			t.Errorf("userAgent(%q) = %q, want none", m, got)
		}
	}
}

func TestLogOnlyCountsWithoutDropping(t *testing.T) {
	g := newGuard(t, Config{
		Access:   AccessConfig{Mode: LogOnly, Deny: []string{"203.0.113.0/24"}},
		Limits:   LimitsConfig{Mode: LogOnly, Invite: Limit{Rate: 0.001, Burst: 2}},
		Scanners: ScannersConfig{Mode: LogOnly},
		Bans:     BansConfig{After: 3},
	})
	w := newWorker(g)
	if got := w.sendN(request("INVITE", ""), "192.0.2.1:5060", 10); got != 10 {
		t.Errorf("limits log_only: %d of 10 admitted", got)
	}
	if !w.send(request("OPTIONS", ""), "203.0.113.1:5060") || !w.send(request("OPTIONS", "friendly-scanner"), "198.51.100.1:5060") {
		t.Error("access or scanners in log_only dropped")
	}
	s := g.Stats()
	if s.TotalDropped() != 0 {
		t.Errorf("log_only dropped %d", s.TotalDropped())
	}
	if s.WouldDrop("rate", "invite") != 8 || s.WouldDrop("access", "deny") != 1 || s.WouldDrop("scanner", "") != 1 {
		t.Errorf("would drop: rate %d, deny %d, scanner %d; want 8, 1, 1", s.WouldDrop("rate", "invite"), s.WouldDrop("access", "deny"), s.WouldDrop("scanner", ""))
	}
	if len(g.Bans().List()) != 0 || s.WouldBan[OriginRate] != 2 {
		t.Errorf("bans %v, would-ban %d: log_only bans nobody and counts 2 (8 violations, after 3)", g.Bans().List(), s.WouldBan[OriginRate])
	}
}

func TestRulesTurnOff(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{Mode: Off, Invite: Limit{Rate: 0.001, Burst: 1}}, Scanners: ScannersConfig{Mode: Off}})
	w := newWorker(g)
	if got := w.sendN(request("INVITE", "friendly-scanner"), "192.0.2.1:5060", 10); got != 10 {
		t.Errorf("%d of 10 admitted with limits and scanners off", got)
	}
	g2 := newGuard(t, Config{Enabled: boolp(false), Access: AccessConfig{Deny: []string{"0.0.0.0/0"}},
		Gateways: GatewaysConfig{Caps: []GatewayCap{{Upstream: "gw", CPS: 0.001, Burst: 1}}}})
	gw := netip.MustParseAddrPort("192.0.2.9:5060")
	g2.SetUpstreams([]Upstream{{ID: "gw", Addr: gw}})
	if !newWorker(g2).send(request("INVITE", ""), "192.0.2.1:5060") || !g2.Gate(netip.MustParseAddrPort("192.0.2.1:5060")) {
		t.Error("edge.enabled false still dropped")
	}
	for range 3 {
		if _, ok := g2.AdmitCall(gw); !ok {
			t.Fatal("edge.enabled false still capped calls")
		}
	}
}

func TestBansExpireAndSurviveReload(t *testing.T) {
	g := newGuard(t, Config{})
	w := newWorker(g)
	b := g.Bans()
	if err := b.Add(netip.MustParsePrefix("192.0.2.0/24"), time.Hour, OriginManual, "abuse"); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(netip.MustParsePrefix("198.51.100.1/32"), time.Nanosecond, OriginManual, "short"); err != nil {
		t.Fatal(err)
	}
	p, _ := Prepare(Config{Limits: LimitsConfig{Invite: Limit{Rate: 5, Burst: 5}}})
	g.Install(p)
	if w.send(request("INVITE", ""), "192.0.2.77:5060") {
		t.Error("the ban did not survive the reload")
	}
	if !w.send(request("INVITE", ""), "198.51.100.1:5060") {
		t.Error("an expired ban still applied")
	}
	if n := b.Expire(); n != 1 {
		t.Errorf("Expire removed %d, want 1", n)
	}
	if !b.Remove(netip.MustParsePrefix("192.0.2.0/24")) || b.Remove(netip.MustParsePrefix("192.0.2.0/24")) {
		t.Error("Remove does not report the ban it lifted")
	}
	if !w.send(request("INVITE", ""), "192.0.2.77:5060") {
		t.Error("a lifted ban still applied")
	}
}

func TestBanListIsBounded(t *testing.T) {
	g := newGuard(t, Config{Bans: BansConfig{Max: 2}})
	b := g.Bans()
	for i, want := range []error{nil, nil, ErrBanListFull} {
		if err := b.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32), time.Hour, OriginRate, ""); err != want {
			t.Errorf("ban %d: %v, want %v", i, err, want)
		}
	}
	if g.Stats().BansRefused[OriginRate] != 1 {
		t.Error("the refused ban was not counted")
	}
}

func TestGatewayCapRefusesCallsOverIt(t *testing.T) {
	g := newGuard(t, Config{Gateways: GatewaysConfig{RetryAfter: 3 * time.Second, Caps: []GatewayCap{{Upstream: "carrier", CPS: 0.001, Burst: 3}, {Upstream: "127.0.0.1:5072", CPS: 0.001, Burst: 1}}}})
	carrier, other, byAddr := netip.MustParseAddrPort("127.0.0.1:5071"), netip.MustParseAddrPort("127.0.0.1:5073"), netip.MustParseAddrPort("127.0.0.1:5072")
	g.SetUpstreams([]Upstream{{ID: "carrier", Addr: carrier}, {ID: "udp:127.0.0.1:5073", Addr: other}, {ID: "b", Addr: byAddr}})
	for i := range 3 {
		if ra, ok := g.AdmitCall(carrier); !ok || ra != 0 {
			t.Fatalf("call %d under the cap: %d, %v", i, ra, ok)
		}
	}
	if ra, ok := g.AdmitCall(carrier); ok || ra != 3 {
		t.Errorf("call over the cap: retry-after %d, ok %v; want 3, false", ra, ok)
	}
	if _, ok := g.AdmitCall(byAddr); !ok {
		t.Error("first call to the cap named by address refused")
	}
	if _, ok := g.AdmitCall(byAddr); ok {
		t.Error("the cap named by address does not apply")
	}
	for range 100 {
		if _, ok := g.AdmitCall(other); !ok {
			t.Fatal("an upstream without a cap refused a call")
		}
	}
	// A reload keeps the spent bucket of a cap that stays.
	g.SetUpstreams([]Upstream{{ID: "carrier", Addr: carrier}})
	if _, ok := g.AdmitCall(carrier); ok {
		t.Error("the cap's bucket was refilled by SetUpstreams")
	}
	if got := g.Stats().Dropped("call_rate", "carrier"); got != 2 {
		t.Errorf("call_rate/carrier drops = %d, want 2", got)
	}
	p, _ := Prepare(Config{Gateways: GatewaysConfig{Mode: LogOnly, Caps: []GatewayCap{{Upstream: "carrier", CPS: 0.001, Burst: 3}}}})
	g.Install(p)
	if _, ok := g.AdmitCall(carrier); !ok {
		t.Error("log_only refused a call")
	}
	if got := g.Stats().WouldDrop("call_rate", "carrier"); got != 1 {
		t.Errorf("call_rate would-drops = %d, want 1", got)
	}
}

func TestOverLimitAnswers503WithRetryAfterToReplyNetworks(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{Invite: Limit{Rate: 0.001, Burst: 1}, Reply: "503", ReplyNetworks: []string{"10.0.0.0/8"}, RetryAfter: 7 * time.Second}})
	w := newWorker(g)
	inv := request("INVITE", "")
	w.send(inv, "10.0.0.5:5060")
	src := transport.Peer{Addr: netip.MustParseAddrPort("10.0.0.5:5060"), Kind: transport.UDP}
	w.out.Buf = w.out.Buf[:0]
	if !w.h.Handle(inv, src, &w.out) {
		t.Fatal("no 503 sent for a request over its limit from reply_networks")
	}
	got := string(w.out.Buf)
	for _, want := range []string{"SIP/2.0 503 Service Unavailable\r\n", "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1;rport\r\n",
		"To: <sip:100@example.com>;tag=", "Call-ID: c1@198.51.100.7\r\n", "CSeq: 1 INVITE\r\n", "Retry-After: 7\r\n", "Content-Length: 0\r\n\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("503 lacks %q:\n%s", want, got)
		}
	}
	if w.out.To != src || w.core.handled != 1 {
		t.Errorf("503 to %v, core handled %d", w.out.To, w.core.handled)
	}
	w.h.Sent(&w.out, nil)
	if w.core.sent != 0 {
		t.Error("the core heard of the edge's own 503")
	}
	outside := transport.Peer{Addr: netip.MustParseAddrPort("192.0.2.5:5060")}
	w.h.Handle(inv, outside, &w.out) // its burst
	w.out.Buf = w.out.Buf[:0]
	if w.h.Handle(inv, outside, &w.out) || bytes.Contains(w.out.Buf, []byte("503")) {
		t.Error("a source outside reply_networks got a 503 (it may be spoofed)")
	}
}

// TestNATedOfficeIsNotBannedButAScannerIs is the office: 200
// phones behind one address re-REGISTER at once after an outage (each
// REGISTER challenged and sent again with credentials, and one
// retransmission of each), with the default limits; none is dropped and
// the address is not banned. A scanner on another address is.
func TestNATedOfficeIsNotBannedButAScannerIs(t *testing.T) {
	g := newGuard(t, Config{})
	w := newWorker(g)
	office := "198.51.100.20"
	reg := request("REGISTER", "Yealink SIP-T46U 108.86.0.20")
	sent, admitted := 0, 0
	for phone := range 200 {
		src := fmt.Sprintf("%s:%d", office, 10000+phone) // the NAT's ports
		for range 2 {                                    // unauthenticated, then with credentials
			sent++
			if w.send(reg, src) {
				admitted++
			}
		}
	}
	// Then each phone's SUBSCRIBEs (BLF, MWI) and an OPTIONS keep-alive.
	for phone := range 200 {
		src := fmt.Sprintf("%s:%d", office, 10000+phone)
		sent += 5
		admitted += w.sendN(request("SUBSCRIBE", "Yealink"), src, 4) + w.sendN(request("OPTIONS", "Yealink"), src, 1)
	}
	if admitted != sent {
		t.Errorf("office: %d of %d admitted with the default limits", admitted, sent)
	}
	for _, b := range g.Bans().List() {
		if strings.HasPrefix(b.Prefix, office) {
			t.Errorf("office banned: %+v", b)
		}
	}
	scanner := "203.0.113.66"
	for ext := range 300 {
		w.send(request("REGISTER", "friendly-scanner"), fmt.Sprintf("%s:5070", scanner))
		_ = ext
	}
	bans := g.Bans().List()
	if len(bans) != 1 || bans[0].Prefix != scanner+"/32" {
		t.Errorf("bans = %+v, want the scanner's", bans)
	}
}

func TestReloadedScannerListAppliesToCachedUserAgents(t *testing.T) {
	g := newGuard(t, Config{})
	w := newWorker(g)
	opt := request("OPTIONS", "Acme-Dialer/2.0")
	if !w.send(opt, "192.0.2.1:5060") {
		t.Fatal("Acme-Dialer dropped before it is listed")
	}
	p, err := Prepare(Config{Scanners: ScannersConfig{UserAgents: []string{"acme-dialer"}}})
	if err != nil {
		t.Fatal(err)
	}
	g.Install(p)
	if w.send(opt, "192.0.2.2:5060") {
		t.Error("the worker's cached verdict outlived the reload")
	}
}

func TestGatewayCapByDNSNameCapsEachAddress(t *testing.T) {
	g := newGuard(t, Config{Gateways: GatewaysConfig{Caps: []GatewayCap{{Upstream: "gw.example.net", CPS: 0.001, Burst: 1}}}})
	a, b := netip.MustParseAddrPort("192.0.2.1:5060"), netip.MustParseAddrPort("192.0.2.2:5060")
	g.SetUpstreams([]Upstream{{ID: "udp:192.0.2.1:5060", Addr: a, Name: "gw.example.net"}, {ID: "udp:192.0.2.2:5060", Addr: b, Name: "gw.example.net"}})
	for _, up := range []netip.AddrPort{a, b} {
		if _, ok := g.AdmitCall(up); !ok {
			t.Errorf("%v: first call refused", up)
		}
		if _, ok := g.AdmitCall(up); ok {
			t.Errorf("%v: the cap of its DNS name does not apply", up)
		}
	}
}
