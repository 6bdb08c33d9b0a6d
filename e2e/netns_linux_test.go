//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsLab is a set of network namespaces made for one test, named
// PREFIX-NAME with a prefix unique to the run, deleted when the test ends.
type netnsLab struct {
	t      *testing.T
	ip     string // path of the ip command
	prefix string
}

// newNetnsLab makes the lab or skips the test, with the reason, where
// namespaces cannot be made (not root, no ip command, no permission to
// make one).
func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (run as root, or in a CI container that is)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip command (apt-get install iproute2): network namespaces cannot be made")
	}
	b := make([]byte, 3)
	rand.Read(b)
	lab := &netnsLab{t: t, ip: ip, prefix: "vd" + hex.EncodeToString(b)}
	probe := lab.ns("probe")
	if out, err := exec.Command(ip, "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	exec.Command(ip, "netns", "del", probe).Run()
	return lab
}

// ns returns the full name of the lab's namespace name.
func (l *netnsLab) ns(name string) string { return l.prefix + "-" + name }

// add makes namespace name, with its loopback up; the test's cleanup
// deletes it (and the interfaces in it).
func (l *netnsLab) add(name string) string {
	l.t.Helper()
	full := l.ns(name)
	l.run("netns", "add", full)
	l.t.Cleanup(func() {
		if out, err := exec.Command(l.ip, "netns", "del", full).CombinedOutput(); err != nil {
			l.t.Logf("ip netns del %s: %v: %s", full, err, out)
		}
	})
	l.in(name, "link", "set", "lo", "up")
	return full
}

// run runs the ip command with args, failing the test on error.
func (l *netnsLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// in runs an ip command in namespace name (ip -n).
func (l *netnsLab) in(name string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"-n", l.ns(name)}, args...)...)
}

// sysctl sets kernel settings (key=value) in namespace name.
func (l *netnsLab) sysctl(name string, settings ...string) {
	l.t.Helper()
	args := append([]string{"netns", "exec", l.ns(name), "sysctl", "-q", "-w"}, settings...)
	l.run(args...)
}

// link joins namespaces a and b with a veth pair (ifA in a with addrA,
// ifB in b with addrB, both CIDR) and brings both ends up.
func (l *netnsLab) link(a, ifA, addrA, b, ifB, addrB string) {
	l.t.Helper()
	l.in(a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", l.ns(b))
	l.in(a, "addr", "add", addrA, "dev", ifA)
	l.in(b, "addr", "add", addrB, "dev", ifB)
	l.in(a, "link", "set", ifA, "up")
	l.in(b, "link", "set", ifB, "up")
}

// do runs f on an OS thread that entered namespace name: the sockets f
// opens belong to that namespace (and stay there when used elsewhere). The
// thread is not used again: it ends with the goroutine that locked it.
func (l *netnsLab) do(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		ns, err := os.Open(filepath.Join("/var/run/netns", l.ns(name)))
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listenIn returns a function opening UDP sockets in namespace name.
func (l *netnsLab) listenIn(name string) func(netip.AddrPort) (*net.UDPConn, error) {
	return func(a netip.AddrPort) (c *net.UDPConn, err error) {
		err = l.do(name, func() error {
			c, err = listenUDP(a)
			return err
		})
		return c, err
	}
}

// httpClientIn returns an HTTP client whose connections are made in
// namespace name.
func (l *netnsLab) httpClientIn(name string) *http.Client {
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.do(name, func() error {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	return &http.Client{Timeout: 2 * time.Second, Transport: tr}
}
