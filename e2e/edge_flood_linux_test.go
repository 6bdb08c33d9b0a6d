package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/viaduct-sip/viaduct/bench/load"
)

// TestEdgeFlood is the flood test (#17): the real binary with the
// default edge settings, legitimate calls from four sources while a raw
// socket floods INVITE and REGISTER from millions of spoofed sources in
// 127.64.0.0/10 for 60 s, as fast as one goroutine can send; one datagram
// in 16 comes from one of 8 heavy hitters in 127.99.0.0/24 instead, which
// the limits catch and ban. It checks that the calls complete (under 0.1%
// failures), that Viaduct's RSS grows by under 10 MB over the flood, that
// every datagram Viaduct's socket took is accounted for (passed on, or
// dropped under a reason), and that the heavy hitters are banned and the
// callers are not.
//
// It needs root (a raw socket): it skips without, except under CI=true.
func TestEdgeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a 60 s flood")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestEdgeFlood needs root (a raw socket) and CI runs as root")
		}
		t.Skip("needs root for a raw socket")
	}
	const (
		floodFor  = 60 * time.Second
		callRate  = 40 // calls/s over 4 sources: 10 INVITEs/s each, half the default limit
		mib       = 1 << 20
		rssBound  = 10 * mib
		failLimit = 0.001
	)
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	uas, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	pv, pa := freePort(t, "udp"), freePort(t, "tcp")
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pv))
	cfg := filepath.Join(dir, "viaduct.yaml")
	yaml := fmt.Sprintf("listen: [%q]\nupstreams:\n  - address: %q\nsecret: edge-flood-test-secret-0123456789\nhealth: {enabled: false}\nadmin: {listen: \"127.0.0.1:%d\"}\nshutdown_drain: 0s\n", target, uas.Addr(), pa)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, "viaduct", bin, "--config", cfg)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", pa)
	waitMetrics(t, adminURL)
	rss0 := vmRSS(t, p.cmd.Process.Pid)

	// The flood, from now for floodFor.
	ctx, cancel := context.WithTimeout(context.Background(), floodFor)
	defer cancel()
	var flooded atomic.Uint64
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood(ctx, target, &flooded) }()

	// The legitimate calls, through the whole flood.
	var binds []netip.Addr
	for i := range 4 {
		binds = append(binds, netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i)}))
	}
	uac, err := load.NewUAC(load.UACConfig{Target: target, Sources: 4, Bind: binds})
	if err != nil {
		t.Fatal(err)
	}
	defer uac.Close()
	calls := uint64(callRate * (floodFor - 2*time.Second) / time.Second)
	runCtx, runCancel := context.WithTimeout(context.Background(), floodFor+40*time.Second)
	defer runCancel()
	res, err := uac.Run(runCtx, load.RunOptions{Rate: callRate, Total: calls, Drain: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-floodDone; err != nil {
		t.Fatal(err)
	}
	rss1 := vmRSS(t, p.cmd.Process.Pid)
	sent := flooded.Load()
	t.Logf("flood: %d datagrams in %v (%.0f/s); calls: %d started, %d completed, %d failed %v",
		sent, floodFor, float64(sent)/floodFor.Seconds(), res.Counts.Started, res.Counts.Completed, res.Counts.Failed, res.Counts.FailedBy())
	t.Logf("viaduct RSS: %.1f MiB at the start of the flood, %.1f MiB at its end (%+.1f MiB)", float64(rss0)/mib, float64(rss1)/mib, float64(rss1-rss0)/mib)

	if sent < 100000 {
		t.Errorf("the flood sent only %d datagrams", sent)
	}
	if res.Counts.Started != calls {
		t.Errorf("%d of %d calls started", res.Counts.Started, calls)
	}
	if f := float64(res.Counts.Failed+res.Counts.Unfinished) / float64(res.Counts.Started); f >= failLimit {
		t.Errorf("%.3f%% of the legitimate calls failed, want under %.1f%%", 100*f, 100*failLimit)
	}
	if rss1-rss0 >= rssBound {
		t.Errorf("viaduct's RSS grew by %.1f MiB over the flood, want under %d MiB", float64(rss1-rss0)/mib, rssBound/mib)
	}
	checkAccounting(t, adminURL, sent, res, uas)
	checkBans(t, adminURL)
}

// checkBans checks that the flood's heavy hitters are banned (by the rate
// limits) and no caller is.
func checkBans(t *testing.T, adminURL string) {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/api/v1/bans")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Bans []struct{ Prefix, Origin string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	heavy := 0
	for _, b := range list.Bans {
		switch {
		case strings.HasPrefix(b.Prefix, "127.99.0.") && b.Origin == "rate":
			heavy++
		case strings.HasPrefix(b.Prefix, "127.0.1."):
			t.Errorf("a caller is banned: %+v", b)
		}
	}
	if heavy != heavyHitters {
		t.Errorf("%d of the %d heavy hitters banned; bans: %+v", heavy, heavyHitters, list.Bans)
	}
}

// heavyHitters is the number of spoofed sources that flood over and over.
const heavyHitters = 8

// checkAccounting checks that every datagram sent to Viaduct is counted:
// the flood's, the callers' and the UAS's datagrams are those the edge
// passed on (viaduct_edge_admitted_total), those it dropped under a
// reason (viaduct_edge_dropped_total) and those the kernel dropped
// (viaduct_kernel_receive_drops_total). Viaduct's counters settle once
// the last responses are in.
func checkAccounting(t *testing.T, adminURL string, flooded uint64, res *load.Result, uas *load.UAS) {
	t.Helper()
	var uc load.UASCounts
	var got, want uint64
	var m map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		uas.Counts(&uc)
		want = flooded + res.Counts.Sent + uc.Sent
		m = scrapeMetrics(t, adminURL)
		got = uint64(m["viaduct_edge_admitted_total"] + m["viaduct_edge_dropped_total"] + m["viaduct_kernel_receive_drops_total"])
		if got == want || time.Now().After(deadline) {
			break
		}
	}
	var reasons []string
	for k, v := range m {
		if strings.HasPrefix(k, "viaduct_edge_dropped_total{") && v > 0 {
			reasons = append(reasons, fmt.Sprintf("%s %.0f", strings.TrimPrefix(k, "viaduct_edge_dropped_total"), v))
		}
	}
	t.Logf("edge: admitted %.0f, dropped %.0f (%s), kernel drops %.0f, table %.0f of %.0f entries, %.0f evictions, %.0f bans; the UAS answered %d REGISTERs of the flood",
		m["viaduct_edge_admitted_total"], m["viaduct_edge_dropped_total"], strings.Join(reasons, ", "), m["viaduct_kernel_receive_drops_total"],
		m["viaduct_edge_table_entries"], m["viaduct_edge_table_capacity"], m["viaduct_edge_table_evictions_total"], m["viaduct_edge_bans_active"], uc.Register)
	if got != want {
		t.Errorf("datagrams to Viaduct: %d sent (flood %d, callers %d, UAS %d), %d counted (admitted, dropped by reason, kernel drops)",
			want, flooded, res.Counts.Sent, uc.Sent, got)
	}
	for _, reason := range []string{"new_source", "rate", "ban"} {
		if sumPrefix(m, `viaduct_edge_dropped_total{reason="`+reason+`"`) == 0 {
			t.Errorf("no drop counted as %s", reason)
		}
	}
	if m["viaduct_edge_dropped_total"] < float64(flooded)/2 {
		t.Errorf("the edge dropped %.0f of %d flood datagrams", m["viaduct_edge_dropped_total"], flooded)
	}
}

// sumPrefix sums the samples whose name and labels start with prefix.
func sumPrefix(m map[string]float64, prefix string) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// scrapeMetrics reads /metrics: each sample by its name and labels, and
// each metric name's sum over its labels.
func scrapeMetrics(t *testing.T, adminURL string) map[string]float64 {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	samples, err := parseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]float64, len(samples))
	for key, v := range samples {
		m[key] += v
		if name, _, ok := strings.Cut(key, "{"); ok {
			m[name] += v
		}
	}
	return m
}

// waitMetrics waits up to 10 s for the admin API to answer.
func waitMetrics(t *testing.T, adminURL string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := adminClient.Get(adminURL + "/metrics"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the admin API did not come up in 10 s")
		}
	}
}

// vmRSS returns the resident set size of process pid (VmRSS).
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/pid/status")
	return 0
}

// flood sends INVITEs and REGISTERs (alternately) to target over a raw
// socket, each from another source in 127.64.0.0/10 (4 million addresses,
// then round again) and a source port of its own, until ctx is done. It
// counts the datagrams the kernel took.
func flood(ctx context.Context, target netip.AddrPort, sent *atomic.Uint64) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: target.Addr().As4()}
	pkts := [2][]byte{floodPacket("INVITE", target), floodPacket("REGISTER", target)}
	for i := uint32(0); ctx.Err() == nil; {
		for range 256 {
			pkt := pkts[i&1]
			src := 127<<24 | 64<<16 + i%(1<<22)
			if i%16 == 0 {
				src = 127<<24 | 99<<16 | (i/16)%heavyHitters + 1 // 127.99.0.1-8
			}
			binary.BigEndian.PutUint32(pkt[12:16], src)                  // IP source
			binary.BigEndian.PutUint16(pkt[20:22], uint16(1024+i%60000)) // UDP source port
			if err := unix.Sendto(fd, pkt, 0, to); err == nil {
				sent.Add(1)
			} else if err != unix.ENOBUFS && err != unix.EAGAIN {
				return fmt.Errorf("raw send: %w", err)
			}
			i++
		}
	}
	return nil
}

// floodPacket returns an IPv4 packet (header with the source to fill in)
// carrying a UDP datagram with a SIP request of method to target.
func floodPacket(method string, target netip.AddrPort) []byte {
	sip := fmt.Sprintf("%s sip:100@%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.64.0.1:5060;branch=z9hG4bK-flood\r\nMax-Forwards: 70\r\n"+
		"From: <sip:flood@example.com>;tag=f1\r\nTo: <sip:100@example.com>\r\nCall-ID: flood@127.64.0.1\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:flood@127.64.0.1:5060>\r\nUser-Agent: Flooder/1.0\r\nContent-Length: 0\r\n\r\n", method, target, method)
	pkt := make([]byte, 28+len(sip))
	pkt[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	pkt[8] = 64 // TTL
	pkt[9] = unix.IPPROTO_UDP
	dst := target.Addr().As4()
	copy(pkt[16:20], dst[:])
	binary.BigEndian.PutUint16(pkt[22:24], target.Port())
	binary.BigEndian.PutUint16(pkt[24:26], uint16(8+len(sip)))
	// UDP checksum 0: none (allowed over IPv4); the kernel fills in the IP
	// header's checksum.
	copy(pkt[28:], sip)
	if len(pkt) > math.MaxUint16 {
		panic("flood packet too large")
	}
	return pkt
}
