//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
)

// TestActiveActiveReusePort is the active/active claim on one host: three
// Viaduct processes with the same configuration and secret share one UDP
// address (reuse_port), in front of two upstreams, and the kernel spreads
// the clients over them by 4-tuple as ECMP spreads them over hosts. Each
// instance also listens on a port of its own, so that the test can send
// through one instance alone.
//
// First, with all three up, the same Call-IDs sent through each instance
// alone reach one upstream, and every instance relays responses to
// requests the others forwarded (the upstreams answer from sockets of a
// pool, whose 4-tuples hash to any instance). Then calls from 64 source
// ports run through the shared address while instance 1 is killed with
// SIGKILL, started again and instance 2 is killed: calls are lost only
// where a kill explains it, under 0.1%; no Call-ID reaches both upstreams;
// no instance drops a response as forged; the restarted instance answers
// at once; and no instance ever reports an upstream down, though both
// answer all along (each instance must get its own probe replies).
func TestActiveActiveReusePort(t *testing.T) {
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	c := &cluster{t: t, dir: dir}
	lo := netip.MustParseAddr("127.0.0.1")
	c.ups = []*clusterUAS{newClusterUAS(t, "uas-a", lo, 32, listenUDP), newClusterUAS(t, "uas-b", lo, 32, listenUDP)}
	c.shared = netip.AddrPortFrom(lo, uint16(freePort(t, "udp")))
	cfg := writeFile(t, dir, "viaduct.yaml", fmt.Sprintf(`listen: ["%s"]
advertise: "%s"
reuse_port: true
workers: 1
secret: "active-active-e2e-shared-secret-0123456789"
upstreams: ["%s", "%s"]
shutdown_drain: 0s
%s`, c.shared, c.shared, c.ups[0].addr, c.ups[1].addr, clusterHealthYAML()))
	own := make([]int, 3)
	for i := range own {
		own[i] = freePort(t, "udp")
		c.insts = append(c.insts, &instance{idx: i, admin: fmt.Sprintf("http://127.0.0.1:%d", freePort(t, "tcp")), client: adminClient})
	}
	c.launch = func(i int, name string) *proc {
		return start(t, dir, name, bin, "--config", cfg,
			"--listen", fmt.Sprintf("%s,127.0.0.1:%d", c.shared, own[i]),
			"--admin-listen", c.insts[i].admin[len("http://"):])
	}
	c.clientListen = func() (*net.UDPConn, error) { return listenUDP(netip.AddrPortFrom(lo, 0)) }
	c.direct = func(i int) (*net.UDPConn, netip.AddrPort, error) {
		conn, err := listenUDP(netip.AddrPortFrom(lo, 0))
		return conn, netip.AddrPortFrom(lo, uint16(own[i])), err
	}
	c.startAll()

	c.relayCheck("loopback", 40)
	plan := loadPlan{rate: 200, sending: 20 * time.Second, sources: 64, timeout: 6 * time.Second,
		kill1: 0.25, restart1: 0.4, kill2: 0.65}
	rep, watch := c.killRestartKill(load.NewUAC, plan)
	c.checkRun(rep, watch, plan)
}
