package capture

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// kamailioHEP is a Kamailio configuration whose sipcapture module takes
// HEP on udp:ADDR and logs, for every message it decodes, the source
// address and port, the transport and the Call-ID it read from the frame.
const kamailioHEP = `#!KAMAILIO
debug=1
log_stderror=yes
children=1
auto_aliases=no
listen=udp:%s
mpath="%s"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "text://%s")
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_on", 0)
modparam("sipcapture", "insert_retry_timeout", 0)
request_route {
	xlog("L_ALERT", "HEPMSG src=$si:$sp proto=$proto callid=$ci what=$rm\n");
	drop;
}
onreply_route {
	xlog("L_ALERT", "HEPMSG src=$si:$sp proto=$proto callid=$ci what=$rs\n");
	drop;
}
`

// A second independent decoder: Kamailio's sipcapture module reads the
// frames the sender sends, with the source address and port and the
// transport of each message (sngrep keeps no transport: it writes every
// HEP message as UDP).
func TestHEPToKamailio(t *testing.T) {
	bin, modules := testenv.Kamailio(t)
	if modules == "" {
		t.Skip("kamailio modules not found")
	}
	dir := t.TempDir()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, kamailioHEP, addr, modules, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log testenv.SyncBuffer
	cmd := exec.CommandContext(ctx, bin, "-f", cfg, "-DD", "-E", "-n", "1", "-Y", dir)
	cmd.Stdout, cmd.Stderr = &log, &log
	// Kamailio forks: its children share the output pipe. Kill the whole
	// group, and do not wait more than a few seconds for the pipe to
	// close (a child that outlived SIGTERM held it open, and the test
	// with it, until the suite's timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	// Kamailio prints its sockets once bound ("Listening on ... udp:
	// 127.0.0.1 [127.0.0.1]:PORT").
	_, port, _ := net.SplitHostPort(addr)
	testenv.WaitFor(t, "kamailio to listen", 10*time.Second, func() bool { return strings.Contains(log.String(), "]:"+port+"\n") })

	c, tp := startCapture(t, Config{HEP: HEPConfig{Address: addr, AgentID: 2001}})
	pass(tp, invite("kam-udp@x", "alice"), transport.UDP)
	pass(tp, invite("kam-tls@x", "alice"), transport.TLS)
	pass(tp, sipMsg("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-1\nFrom: <sip:alice@example.com>;tag=1\nTo: <sip:bob@example.com>;tag=2\nCall-ID: kam-udp@x\nCSeq: 1 INVITE\nContent-Length: 0"), transport.UDP)
	want := []string{
		"src=198.51.100.7:5070 proto=udp callid=kam-udp@x what=INVITE",
		"src=192.0.2.10:5060 proto=udp callid=kam-udp@x what=INVITE",
		"src=198.51.100.7:5070 proto=tcp callid=kam-tls@x what=INVITE",
		"src=192.0.2.10:5060 proto=tcp callid=kam-tls@x what=INVITE",
		"src=198.51.100.7:5070 proto=udp callid=kam-udp@x what=180",
		"src=192.0.2.10:5060 proto=udp callid=kam-udp@x what=180",
	}
	line := regexp.MustCompile(`HEPMSG (.*)`)
	testenv.WaitFor(t, "kamailio to decode 6 messages", 10*time.Second, func() bool { return len(line.FindAllString(log.String(), -1)) >= len(want) })
	var got []string
	for _, m := range line.FindAllStringSubmatch(log.String(), -1) {
		got = append(got, m[1])
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n"), w) {
			t.Errorf("kamailio did not decode %q; it logged:\n%s", w, strings.Join(got, "\n"))
		}
	}
	t.Logf("kamailio decoded:\n%s", strings.Join(got, "\n"))
	if s := c.Stats(); s.Sent != 6 {
		t.Errorf("sent %d frames, want 6", s.Sent)
	}
}
