package main

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// Secret rotation over real sockets: instance A (secret OLD) forwards an
// INVITE whose Via advertises the address where instance B listens, as
// with a shared service address; B was started with secret NEW and
// previous_secret OLD. The upstream answers along the Via, to B, which
// relays the 200 to the client. Without previous_secret B drops it as
// forged.
func TestSecretRotation(t *testing.T) {
	oldSecret := writeFile(t, "old", "old-secret-0123456789abcdef\n")
	newSecret := writeFile(t, "new", "new-secret-0123456789abcdef\n")
	upstream, upAddr := testenv.ListenUDP(t)

	start := func(listen netip.AddrPort, extra ...string) *inProcess {
		adm := freeTCPPort(t)
		// --health=false: the upstream answers the one INVITE it reads,
		// not a probe.
		args := append([]string{"--listen", listen.String(), "--upstream", upAddr.String(), "--workers", "1",
			"--admin-listen", adm.String(), "--shutdown-drain", "0", "--health=false"}, extra...)
		return startInProcess(t, procHooks{}, adm.String(), args...)
	}
	// answer reads one request at the upstream and sends its 200 to the
	// address in its top Via.
	answer := func() {
		t.Helper()
		buf := make([]byte, 65536)
		upstream.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := upstream.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("the INVITE did not reach the upstream: %v", err)
		}
		var m parser.Message
		if err := parser.Parse(buf[:n], &m); err != nil {
			t.Fatalf("forwarded INVITE does not parse: %v", err)
		}
		top := m.TopVia()
		to, err := netip.ParseAddrPort(string(top.Host) + ":" + strconv.Itoa(top.Port))
		if err != nil {
			t.Fatalf("top Via sent-by %s:%d: %v", top.Host, top.Port, err)
		}
		if _, err := upstream.WriteToUDPAddrPort(testenv.AppendResponse(nil, &m, "200 OK", "up"), to); err != nil {
			t.Fatal(err)
		}
	}

	// B: the rotated instance, on the advertised address.
	shared := freePort(t)
	start(shared, "--secret-file", newSecret, "--previous-secret-file", oldSecret)
	// A: still on the old secret, advertising B's address.
	a := freePort(t)
	start(a, "--advertise", shared.String(), "--secret-file", oldSecret)
	c := newSIPClient(t, a)
	c.send(t, "INVITE", "rotation@test", "sip:bob@example.com", "sip:bob@example.com")
	answer()
	c.waitOK(t, 1, 3*time.Second)

	// C: the new secret alone, advertised by D (old secret): the 200 is
	// dropped, so the test above depends on previous_secret.
	sharedC := freePort(t)
	pc := start(sharedC, "--secret-file", newSecret)
	d := freePort(t)
	start(d, "--advertise", sharedC.String(), "--secret-file", oldSecret)
	c2 := newSIPClient(t, d)
	c2.send(t, "INVITE", "no-rotation@test", "sip:bob@example.com", "sip:bob@example.com")
	answer()
	const forged = `viaduct_messages_dropped_total{reason="forged_response"} 1`
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, body := get(t, pc.base+"/metrics"); strings.Contains(body, forged) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("C never counted the response as forged")
		}
	}
	if n, _ := c2.ok(""); n != 0 {
		t.Errorf("without previous_secret the response was relayed (%d 200s)", n)
	}
}
