package deploy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// freeBase finds a port base for scripts/demo.sh whose ports are free:
// SIP on base (UDP and TCP), the responders on base+11 and base+12, the
// admin API on base+30. It stays below the kernel's ephemeral ports
// (32768 and up), where outgoing connections take ports at any time.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(12000)
		ok := true
		var closers []func() error
		for _, off := range []int{0, 11, 12} {
			c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, c.Close)
		}
		for _, off := range []int{0, 30} {
			if !ok {
				break
			}
			l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
			} else {
				closers = append(closers, l.Close)
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port base")
	return 0
}

// TestDemoScript runs `make demo`'s script briefly: it must pass, show the
// load table and metrics, and leave nothing running (its ports are free
// again).
func TestDemoScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every command and runs a short load")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	base := freeBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Dir = ".."
	cmd.Env = append(cmd.Environ(), "DEMO_DURATION=2s", "DEMO_RATE=200", fmt.Sprintf("DEMO_PORT_BASE=%d", base))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"/readyz: ready",
		"completed              400",
		"result                 PASS",
		`viaduct_requests_received_total{method="INVITE"} 400`,
		`viaduct_upstream_requests_forwarded_total{upstream="uas-1"}`,
		`viaduct_upstream_up{upstream="uas-2"} 1`,
		`"requests_forwarded":`,
		"stopping everything the demo started",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Everything it started is gone: the ports can be bound again.
	for _, off := range []int{0, 11, 12} {
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", base+off))
		if err != nil {
			t.Errorf("port %d still taken after the demo: %v", base+off, err)
			continue
		}
		c.Close()
	}
	if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", base+30)); err != nil {
		t.Errorf("admin port still taken after the demo: %v", err)
	} else {
		l.Close()
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
