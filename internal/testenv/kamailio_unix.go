//go:build unix

package testenv

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
)

// kamailioRegistrarConfig is a Kamailio registrar and proxy on UDP that
// keeps its location table in memory (usrloc db_mode 0): two of them share
// nothing. It stores the Path of a REGISTER (Viaduct's) and sends requests
// for the contact through it, and Record-Routes the requests it routes, so
// that the calls' ACK and BYE come back to it. It logs what tests read:
// "registrar: ready" once it takes requests, "registrar: registered AOR" for
// every binding saved and "registrar: request METHOD RURI-USER CALL-ID" for
// every request it receives. Printf verb: the UDP port.
const kamailioRegistrarConfig = `#!KAMAILIO
debug=1
log_stderror=yes
children=1
dns=no
rev_dns=no
auto_aliases=no
disable_tcp=yes
listen=udp:127.0.0.1:%d

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

modparam("usrloc", "db_mode", 0)
# Save Path, route through it; do not insist on Supported: path.
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 0)

event_route[core:worker-one-init] {
	xlog("L_NOTICE", "registrar: ready\n");
}

request_route {
	xlog("L_NOTICE", "registrar: request $rm $rU $ci\n");
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		# The ACK of a non-2xx response: absorbed by its transaction.
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
		xlog("L_NOTICE", "registrar: registered $tu\n");
		exit;
	}
	record_route();
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	t_relay();
}
`

// KamailioRegistrar is a Kamailio registrar started by
// StartKamailioRegistrar.
type KamailioRegistrar struct {
	// Addr is its UDP address.
	Addr netip.AddrPort
	// LogPath is the file of its output.
	LogPath string
}

// StartKamailioRegistrar runs Kamailio as a registrar (see
// kamailioRegistrarConfig) on a free loopback UDP port and returns once it
// logs "registrar: ready", failing the test if it exits first or is not
// ready in 10 seconds. Kamailio forks its workers: it runs in a process
// group of its own, its output goes to a file (a pipe would stay open in the
// workers), and the test's cleanup kills the group. Without kamailio the
// test is skipped, or fails when CI=true (see Kamailio).
func StartKamailioRegistrar(t testing.TB) *KamailioRegistrar {
	t.Helper()
	kamailio, modules := Kamailio(t)
	dir := t.TempDir()
	r := &KamailioRegistrar{Addr: FreePort(t), LogPath: filepath.Join(dir, "kamailio.out")}
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, kamailioRegistrarConfig, r.Addr.Port()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-DD", "-E", "-f", cfg, "-w", dir, "-Y", dir, "-m", "32", "-M", "8"}
	if modules != "" {
		args = append(args, "-L", modules)
	}
	cmd := exec.Command(kamailio, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	StartLogged(t, cmd, r.LogPath)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	r.waitReady(t, done)
	return r
}

// waitReady polls the log until Kamailio says it is ready.
func (r *KamailioRegistrar) waitReady(t testing.TB, exited <-chan struct{}) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(r.Log(), "registrar: ready"); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("kamailio exited:\n%s", r.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio did not start:\n%s", r.Log())
		}
	}
}

// Log returns Kamailio's output so far ("" when it cannot be read).
func (r *KamailioRegistrar) Log() string {
	b, _ := os.ReadFile(r.LogPath)
	return string(b)
}
