package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// Issue #15 with SIPp as the independent peer: a SIPp UAC over TCP, with
// one connection (-t t1, a trunk) and with one connection per call (-t tn,
// a phone fleet), through the binary to two SIPp UASs over UDP and over
// TCP. Every call completes, both upstreams take calls, and no 180 is
// reordered after its 200 (SIPp's uac scenario fails a call whose
// responses come out of order).
func TestSIPpOverTCP(t *testing.T) {
	sipp := testenv.Sipp(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, c := range []struct{ uac, upstream string }{
		{"t1", "udp"}, {"tn", "udp"}, {"t1", "tcp"}, {"tn", "tcp"},
	} {
		t.Run(c.uac+"_to_"+c.upstream, func(t *testing.T) { testSIPpOverTCP(t, sipp, c.uac, c.upstream) })
	}
}

func testSIPpOverTCP(t *testing.T, sipp, uacMode, upstream string) {
	bin := viaductBinary(t)
	dir := t.TempDir()
	const calls, rate = 200, 100
	var uas []*proc
	var ups []string
	for i := range 2 {
		a := freePort(t)
		args := []string{"-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(a.Port()), "-nostdin", "-bind_local",
			"-timeout", "60s", "-trace_stat", "-fd", "1", "-stf", fmt.Sprintf("uas%d.csv", i+1)}
		up := a.String()
		if upstream == "tcp" {
			args = append(args, "-t", "t1")
			up = "tcp:" + up
		}
		p := start(t, dir, sipp, args...)
		waitListening(t, a, upstream, p)
		uas, ups = append(uas, p), append(ups, up)
	}
	proxy := freePort(t)
	v := start(t, dir, bin, "--listen", proxy.String(), "--upstream", ups[0], "--upstream", ups[1], "--workers", "2",
		"--admin-listen", "off", "--shutdown-drain", "0", "--health=false")
	waitListening(t, proxy, "tcp", v)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", "-t", uacMode, proxy.String(), "-i", "127.0.0.1", "-p", fmt.Sprint(freePort(t).Port()),
		"-nostdin", "-r", fmt.Sprint(rate), "-m", fmt.Sprint(calls), "-timeout", "40s", "-recv_timeout", "4000",
		"-max_socket", "1000", "-trace_stat", "-fd", "1", "-stf", "uac.csv")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("sipp uac -t %s: %v\n%s\nviaduct log:\n%s", uacMode, err, lastLines(string(out), 30), lastLines(v.out.String(), 30))
	}
	got := lastRow(t, filepath.Join(dir, "uac.csv"), "SuccessfulCall(C)", "FailedCall(C)")
	if got[0] != calls || got[1] != 0 {
		t.Errorf("uac: %d successful, %d failed calls; want %d and 0", got[0], got[1], calls)
	}
	var per []int
	for i, p := range uas {
		p.stop(t, syscall.SIGTERM, 5*time.Second)
		per = append(per, lastRow(t, filepath.Join(dir, fmt.Sprintf("uas%d.csv", i+1)), "IncomingCall(C)")[0])
	}
	if per[0] == 0 || per[1] == 0 || per[0]+per[1] != calls {
		t.Errorf("calls per upstream %v, want both > 0 and %d in all", per, calls)
	}
	if exited, err := v.stop(t, syscall.SIGTERM, 5*time.Second); !exited || err != nil {
		t.Errorf("viaduct after SIGTERM: exited=%v err=%v", exited, err)
	}
	if log := v.out.String(); !strings.Contains(log, fmt.Sprintf("rx_INVITE=%d", calls)) || strings.Contains(log, "drop_") {
		t.Errorf("viaduct log:\n%s", lastLines(log, 20))
	}
}

// waitListening waits (5 s at most) until p listens on addr over network
// (udp: the port is taken; tcp: a connection is accepted).
func waitListening(t *testing.T, addr netip.AddrPort, network string, p *proc) {
	t.Helper()
	if network == "udp" {
		waitBound(t, addr, p)
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if ok, _ := p.exited(); ok {
			break
		}
	}
	t.Fatalf("%s does not accept TCP on %v:\n%s", p.cmd.Path, addr, p.out.String())
}
