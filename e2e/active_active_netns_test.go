//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
)

// TestActiveActiveECMP is TestActiveActiveReusePort across real hops: three
// Viaduct instances, each in a network namespace of its own (a host), hold
// the same anycast address on their loopback and advertise it; a router
// namespace spreads traffic to it over the three with an ECMP route hashed
// on the 4-tuple (fib_multipath_hash_policy=1), as a leaf switch or a
// Kubernetes node pool behind anycast does. The client is in a namespace
// behind the router, the two upstreams on the router; nothing is loopback
// but each instance's admin API, so sent-by, received and rport cross
// routed links. Each instance's configuration is byte for byte the same
// file. Instance i alone is reached from a client address that a policy
// route on the router pins to it. As an anycast host's routing
// daemon would (with BFD, say), the test withdraws a killed instance's
// nexthop 300 ms after the kill and puts it back once it has restarted:
// until then ECMP sends the dead host its share of the flows.
//
//	client 10.0.0.2 --- 10.0.0.1 router 10.0.i.1 --- 10.0.i.2 proxy i (i = 1..3)
//	       10.0.0.1i: policy-routed to proxy i only
//	                       upstreams 203.0.113.1, .2 on lo   anycast 198.51.100.10 on lo
//	                       198.51.100.10/32 nexthop via 10.0.1.2, 10.0.2.2, 10.0.3.2
//
// It skips, saying why, where namespaces cannot be made (not root, no ip
// command).
func TestActiveActiveECMP(t *testing.T) {
	lab := newNetnsLab(t)
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	anycast := netip.MustParseAddrPort("198.51.100.10:5060")
	client := netip.MustParseAddr("10.0.0.2")
	lab.add("router")
	lab.sysctl("router", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	lab.add("client")
	lab.link("router", "toclient", "10.0.0.1/24", "client", "eth0", client.String()+"/24")
	lab.in("client", "route", "add", "default", "via", "10.0.0.1")
	route := []string{"route", "add", anycast.Addr().String() + "/32"}
	proxyAddr := make([]netip.Addr, 3)
	for i := range proxyAddr {
		n := strconv.Itoa(i + 1)
		p := "proxy" + n
		proxyAddr[i] = netip.MustParseAddr("10.0." + n + ".2")
		lab.add(p)
		lab.sysctl(p, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
		lab.link("router", "to"+p, "10.0."+n+".1/24", p, "eth0", proxyAddr[i].String()+"/24")
		lab.in(p, "route", "add", "default", "via", "10.0."+n+".1")
		lab.in(p, "addr", "add", anycast.Addr().String()+"/32", "dev", "lo")
		route = append(route, "nexthop", "via", "10.0."+n+".2")
	}
	lab.in("router", route...)
	// Client addresses pinned to one proxy each by a policy route: the
	// test reaches instance i alone from pinned[i], even while its
	// nexthop is withdrawn. (A socket on a proxy itself would not do:
	// a proxy drops as martian what other proxies relay to it, which
	// comes from the anycast address, one of its own.)
	pinned := make([]netip.Addr, len(proxyAddr))
	for i := range pinned {
		n := strconv.Itoa(i + 1)
		pinned[i] = netip.MustParseAddr("10.0.0.1" + n)
		lab.in("client", "addr", "add", pinned[i].String()+"/24", "dev", "eth0")
		lab.in("router", "rule", "add", "from", pinned[i].String(), "lookup", "10"+n)
		lab.in("router", "route", "add", anycast.Addr().String()+"/32", "via", proxyAddr[i].String(), "table", "10"+n)
	}
	// The routing daemon's part: withdraw a dead proxy's nexthop, put it
	// back when it serves again.
	var routeMu sync.Mutex
	live := []bool{true, true, true}
	setRoute := func(i int, up bool) {
		routeMu.Lock()
		defer routeMu.Unlock()
		live[i] = up
		args := []string{"route", "replace", anycast.Addr().String() + "/32"}
		for j, ok := range live {
			if ok {
				args = append(args, "nexthop", "via", proxyAddr[j].String())
			}
		}
		lab.in("router", args...)
	}
	// The upstreams' addresses on the router's loopback (a dummy
	// interface needs a kernel module that may be missing).
	lab.in("router", "addr", "add", "203.0.113.1/32", "dev", "lo")
	lab.in("router", "addr", "add", "203.0.113.2/32", "dev", "lo")

	c := &cluster{t: t, dir: dir, shared: anycast}
	c.ups = []*clusterUAS{
		newClusterUAS(t, "uas-a", netip.MustParseAddr("203.0.113.1"), 32, lab.listenIn("router")),
		newClusterUAS(t, "uas-b", netip.MustParseAddr("203.0.113.2"), 32, lab.listenIn("router")),
	}
	cfg := writeFile(t, dir, "viaduct.yaml", fmt.Sprintf(`listen: ["%s"]
advertise: "%s"
workers: 1
secret: "active-active-e2e-shared-secret-0123456789"
upstreams: ["%s", "%s"]
shutdown_drain: 0s
admin:
  listen: 127.0.0.1:9090
# The load comes from the client's few addresses, far above the edge's
# per-source limits for one phone: it is a trusted network, as a trunk
# peer or an SBC in front would be.
edge:
  access:
    trusted: ["10.0.0.0/16"]
%s`, anycast, anycast, c.ups[0].addr, c.ups[1].addr, clusterHealthYAML()))
	for i := range proxyAddr {
		c.insts = append(c.insts, &instance{idx: i, admin: "http://127.0.0.1:9090", client: lab.httpClientIn("proxy" + strconv.Itoa(i+1))})
	}
	c.launch = func(i int, name string) *proc {
		return start(t, dir, name, lab.ip, "netns", "exec", lab.ns("proxy"+strconv.Itoa(i+1)), bin, "--config", cfg)
	}
	clientListen := lab.listenIn("client")
	c.withdraw = func(i int) { setRoute(i, false) }
	c.announce = func(i int) { setRoute(i, true) }
	c.detect = 300 * time.Millisecond
	c.clientListen = func() (*net.UDPConn, error) { return clientListen(netip.AddrPortFrom(client, 0)) }
	c.direct = func(i int) (*net.UDPConn, netip.AddrPort, error) {
		conn, err := clientListen(netip.AddrPortFrom(pinned[i], 0))
		return conn, anycast, err
	}
	c.startAll()

	c.relayCheck("ecmp", 40)
	newUAC := func(cfg load.UACConfig) (u *load.UAC, err error) {
		err = lab.do("client", func() error {
			u, err = load.NewUAC(cfg)
			return err
		})
		return u, err
	}
	plan := loadPlan{rate: 200, sending: 20 * time.Second, sources: 64, timeout: 6 * time.Second,
		kill1: 0.25, restart1: 0.4, kill2: 0.65}
	rep, watch := c.killRestartKill(newUAC, plan)
	c.checkRun(rep, watch, plan)
	for _, u := range c.ups {
		for from, n := range u.sources() {
			if from != anycast {
				t.Errorf("%s got %d requests from %v, want all from the shared address %v", u.name, n, from, anycast)
			}
		}
	}
}
