package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// Issue #18's proof, with independent decoders: SIPp's uac calls SIPp's
// uas through the viaduct binary, which sends HEP (sample_rate 0.5) to
// sngrep listening on loopback. The pcap sngrep writes must hold every
// message of the sampled calls, both directions, with the addresses, ports
// and times they had on the wire, and nothing of the other calls. A trace
// armed through the admin API for the first call is fetched as pcap and
// read back by sngrep.
func TestHEPToSngrep(t *testing.T) {
	sngrep := testenv.Sngrep(t)
	sipp := testenv.Sipp(t)
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	hep, uac, uas := freePort(t), freePort(t), freePort(t)
	for hep == uac || uac == uas || hep == uas {
		uac, uas = freePort(t), freePort(t)
	}
	adminAddr := freeTCPPort(t)
	collector := start(t, dir, sngrep, "-N", "-q", "-L", "udp:"+hep.String(), "-O", filepath.Join(dir, "hep.pcap"))
	waitBound(t, hep, collector)
	server := start(t, dir, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(uas.Port()), "-nostdin", "-bind_local", "-timeout", "60s")
	waitBound(t, uas, server)

	const rate = 0.5
	proxy, v := startViaduct(t, fmt.Sprintf(`upstreams: [%q]
health: {enabled: false}
workers: 2
admin: {listen: %q}
capture:
  hep: {address: %q, agent_id: 2001}
  sample_rate: %v
`, uas, adminAddr, hep, rate))
	api := "http://" + adminAddr.String() + "/api/v1/traces"
	waitAdmin(t, "http://"+adminAddr.String()+"/healthz", v)
	// SIPp's Call-IDs, made predictable with -cid_str.
	callID := func(i int) string { return fmt.Sprintf("%d-capture@127.0.0.1", i) }
	const tracedCall = 3
	trace := armTrace(t, api, fmt.Sprintf(`{"call_id": %q, "max_messages": 100}`, callID(tracedCall)))

	began := time.Now()
	const calls = 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", proxy.String(), "-i", "127.0.0.1", "-p", fmt.Sprint(uac.Port()), "-nostdin",
		"-r", "20", "-m", fmt.Sprint(calls), "-timeout", "40s", "-recv_timeout", "4000", "-cid_str", "%u-capture@%s")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sipp uac: %v\n%s\nviaduct log:\n%s", err, lastLines(string(out), 30), v.out.String())
	}
	waitTrace(t, api, trace, 12)
	traced := fetch(t, api+"/"+trace+".pcap")
	if exited, err := v.stop(t, syscall.SIGTERM, 10*time.Second); !exited || err != nil {
		t.Fatalf("viaduct after SIGTERM: exited=%v err=%v\n%s", exited, err, v.out.String())
	}
	ended := time.Now()
	// sngrep writes each message as it decodes it: stop it once its file
	// has not grown for a second (it may still be reading its socket).
	waitSteady(t, filepath.Join(dir, "hep.pcap"), time.Second)
	if exited, _ := collector.stop(t, syscall.SIGINT, 10*time.Second); !exited {
		t.Fatal("sngrep did not stop on SIGINT")
	}
	pkts := readPcap(t, filepath.Join(dir, "hep.pcap"))

	// Each message of a call, on each leg, as SIPp's scenarios exchange them.
	type leg struct{ src, dst netip.AddrPort }
	in, out := leg{uac, proxy}, leg{proxy, uas}
	back, backOut := leg{uas, proxy}, leg{proxy, uac}
	want := map[string][]leg{
		"INVITE": {in, out}, "ACK": {in, out}, "BYE": {in, out},
		"180 INVITE": {back, backOut}, "200 INVITE": {back, backOut}, "200 BYE": {back, backOut},
	}
	seen := map[string]map[string]bool{} // Call-ID -> "kind src dst"
	for _, p := range pkts {
		if p.time.Before(began.Add(-time.Second)) || p.time.After(ended.Add(time.Second)) {
			t.Errorf("packet at %v, outside the test's %v..%v", p.time, began, ended)
		}
		id, kind := sipSummary(p.payload)
		if seen[id] == nil {
			seen[id] = map[string]bool{}
		}
		seen[id][fmt.Sprintf("%s %v %v", kind, p.src, p.dst)] = true
	}
	sampled := 0
	for i := 1; i <= calls; i++ {
		id := callID(i)
		got := seen[id]
		delete(seen, id)
		if !capture.Sampled([]byte(id), rate) {
			if len(got) > 0 {
				t.Errorf("call %s is not sampled, but sngrep got %d of its messages", id, len(got))
			}
			continue
		}
		sampled++
		for kind, legs := range want {
			for _, l := range legs {
				if k := fmt.Sprintf("%s %v %v", kind, l.src, l.dst); !got[k] {
					t.Errorf("call %s: sngrep lacks %s (has %v)", id, k, got)
				}
			}
		}
	}
	if len(seen) > 0 {
		t.Errorf("sngrep got messages of calls the test did not make: %v", seen)
	}
	if sampled == 0 || sampled == calls {
		t.Errorf("%d of %d calls sampled at rate %v", sampled, calls, rate)
	}
	t.Logf("sngrep: %d packets, %d of %d calls sampled", len(pkts), sampled, calls)

	// The trace's pcap, read back by sngrep: every message of its call,
	// and only those.
	path := filepath.Join(dir, "trace.pcap")
	if err := os.WriteFile(path, traced, 0o600); err != nil {
		t.Fatal(err)
	}
	reread := filepath.Join(dir, "reread.pcap")
	if out, err := exec.CommandContext(ctx, sngrep, "-I", path, "-N", "-q", "-O", reread).CombinedOutput(); err != nil {
		t.Fatalf("sngrep -I: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, p := range readPcap(t, reread) {
		id, kind := sipSummary(p.payload)
		if id != callID(tracedCall) {
			t.Errorf("trace message of call %s, want only %s", id, callID(tracedCall))
		}
		got[fmt.Sprintf("%s %v %v", kind, p.src, p.dst)] = true
	}
	for kind, legs := range want {
		for _, l := range legs {
			if k := fmt.Sprintf("%s %v %v", kind, l.src, l.dst); !got[k] {
				t.Errorf("the trace read back by sngrep lacks %s (has %v)", k, got)
			}
		}
	}
}

// waitTrace waits (30 s at most) until the trace id holds n messages.
func waitTrace(t *testing.T, api, id string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var list struct{ Traces []capture.TraceInfo }
		if err := json.Unmarshal(fetch(t, api), &list); err != nil {
			t.Fatal(err)
		}
		for _, tr := range list.Traces {
			if tr.ID == id && tr.Messages >= n {
				return
			}
		}
	}
	t.Fatalf("trace %s did not reach %d messages", id, n)
}

// waitSteady waits (30 s at most) until the file at path has kept its
// size for quiet.
func waitSteady(t *testing.T, path string, quiet time.Duration) {
	t.Helper()
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		size := int64(-1)
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		if size != last {
			last, since = size, time.Now()
		} else if size >= 0 && time.Since(since) >= quiet {
			return
		}
	}
	t.Fatalf("%s kept changing (or never appeared)", path)
}

// waitAdmin waits (30 s at most) until url, on p's admin API, answers.
func waitAdmin(t *testing.T, url string, p *proc) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		if ok, _ := p.exited(); ok {
			break
		}
	}
	t.Fatalf("%s does not answer; viaduct:\n%s", url, p.out.String())
}

// armTrace posts body to the trace API and returns the trace's ID.
func armTrace(t *testing.T, url, body string) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info capture.TraceInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("arm a trace: %s, %v", resp.Status, err)
	}
	return info.ID
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return b
}

// sipSummary returns a message's Call-ID and its kind: the method of a
// request, "STATUS METHOD" of a response.
func sipSummary(b []byte) (callID, kind string) {
	lines := strings.Split(string(b), "\r\n")
	first := strings.Fields(lines[0])
	var cseq string
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		switch name = strings.ToLower(strings.TrimSpace(name)); {
		case !ok:
		case name == "call-id" || name == "i":
			callID = strings.TrimSpace(value)
		case name == "cseq":
			if f := strings.Fields(value); len(f) == 2 {
				cseq = f[1]
			}
		}
	}
	if len(first) > 1 && first[0] == "SIP/2.0" {
		return callID, first[1] + " " + cseq
	}
	if len(first) > 0 {
		return callID, first[0]
	}
	return callID, ""
}

// packet is one UDP or TCP packet of a pcap file.
type packet struct {
	time     time.Time
	src, dst netip.AddrPort
	payload  []byte
}

// readPcap reads a classic pcap file (microsecond or nanosecond times,
// either byte order) of Ethernet, raw IP or Linux cooked frames, and
// returns its UDP and TCP packets over IPv4 or IPv6.
func readPcap(t *testing.T, path string) []packet {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 {
		t.Fatalf("%s: %d bytes, no pcap header", path, len(b))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	nanos := false
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		nanos = true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nanos = binary.BigEndian, true
	default:
		t.Fatalf("%s: not a pcap file (% x)", path, b[:4])
	}
	link := bo.Uint32(b[20:])
	var pkts []packet
	for r := b[24:]; len(r) > 0; {
		if len(r) < 16 {
			t.Fatalf("%s: truncated record header", path)
		}
		sec, frac, incl := bo.Uint32(r), bo.Uint32(r[4:]), int(bo.Uint32(r[8:]))
		if len(r) < 16+incl {
			t.Fatalf("%s: truncated record", path)
		}
		frame := r[16 : 16+incl]
		r = r[16+incl:]
		if !nanos {
			frac *= 1000
		}
		p, ok := decodeFrame(link, frame)
		if !ok {
			t.Fatalf("%s: a frame that is not UDP or TCP over IP (link type %d): % x", path, link, frame[:min(len(frame), 64)])
		}
		p.time = time.Unix(int64(sec), int64(frac))
		pkts = append(pkts, p)
	}
	return pkts
}

// decodeFrame strips the link, IP and UDP or TCP headers of frame.
func decodeFrame(link uint32, frame []byte) (packet, bool) {
	var p packet
	switch link {
	case 1: // Ethernet
		if len(frame) < 14 {
			return p, false
		}
		frame = frame[14:]
	case 113: // Linux cooked
		if len(frame) < 16 {
			return p, false
		}
		frame = frame[16:]
	case 101, 12: // raw IP
	default:
		return p, false
	}
	if len(frame) < 20 {
		return p, false
	}
	var proto byte
	var src, dst netip.Addr
	switch frame[0] >> 4 {
	case 4:
		ihl := int(frame[0]&0xf) * 4
		proto = frame[9]
		src, _ = netip.AddrFromSlice(frame[12:16])
		dst, _ = netip.AddrFromSlice(frame[16:20])
		frame = frame[ihl:]
	case 6:
		if len(frame) < 40 {
			return p, false
		}
		proto = frame[6]
		src, _ = netip.AddrFromSlice(frame[8:24])
		dst, _ = netip.AddrFromSlice(frame[24:40])
		frame = frame[40:]
	default:
		return p, false
	}
	if len(frame) < 8 {
		return p, false
	}
	sport, dport := binary.BigEndian.Uint16(frame), binary.BigEndian.Uint16(frame[2:])
	switch proto {
	case 17:
		frame = frame[8:]
	case 6:
		if off := int(frame[12]>>4) * 4; off <= len(frame) {
			frame = frame[off:]
		}
	default:
		return p, false
	}
	p.src, p.dst, p.payload = netip.AddrPortFrom(src.Unmap(), sport), netip.AddrPortFrom(dst.Unmap(), dport), bytes.Clone(frame)
	return p, true
}

// A collector that is down costs the calls nothing: every SIPp call
// through Viaduct succeeds, and the frames lost are counted in
// viaduct_capture_dropped_messages_total{reason="collector"}. (A stuck
// collector is capture's TestSenderCollectorStuck: loopback TCP buffers
// take megabytes before a sender waits.)
func TestHEPCollectorDown(t *testing.T) {
	sipp := testenv.Sipp(t)
	if testing.Short() {
		t.Skip("-short")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hep := ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := t.TempDir()
	uac, uas := freePort(t), freePort(t)
	for uac == uas {
		uas = freePort(t)
	}
	adminAddr := freeTCPPort(t)
	server := start(t, dir, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(uas.Port()), "-nostdin", "-bind_local", "-timeout", "60s")
	waitBound(t, uas, server)
	proxy, v := startViaduct(t, fmt.Sprintf(`upstreams: [%q]
health: {enabled: false}
admin: {listen: %q}
capture:
  hep: {address: %q, transport: tcp}
`, uas, adminAddr, hep))
	const calls = 400
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", proxy.String(), "-i", "127.0.0.1", "-p", fmt.Sprint(uac.Port()), "-nostdin",
		"-r", "200", "-m", fmt.Sprint(calls), "-timeout", "40s", "-recv_timeout", "4000", "-trace_stat", "-fd", "1", "-stf", "uac.csv")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sipp uac: %v\n%s\nviaduct log:\n%s", err, lastLines(string(out), 30), v.out.String())
	}
	if got := lastRow(t, filepath.Join(dir, "uac.csv"), "SuccessfulCall(C)", "FailedCall(C)"); got[0] != calls || got[1] != 0 {
		t.Errorf("uac: %d successful, %d failed calls; want %d and 0", got[0], got[1], calls)
	}
	metrics := string(fetch(t, "http://"+adminAddr.String()+"/metrics"))
	for _, line := range []string{`viaduct_capture_dropped_messages_total{reason="collector"} `, "viaduct_capture_collector_errors_total "} {
		i := strings.Index(metrics, line)
		if i < 0 || strings.HasPrefix(metrics[i+len(line):], "0\n") {
			t.Errorf("%s is 0 or missing:\n%s", line, grepLines(metrics, "viaduct_capture_"))
		}
	}
}

// grepLines returns the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The capture section: every key read, --hep over the file, defaults, and
// bad values refused at start naming the key.
func TestCaptureConfig(t *testing.T) {
	key := writeFile(t, "hep.key", "s3cret\n")
	base := "listen: [\"127.0.0.1:5060\"]\nupstreams: [\"127.0.0.1:5071\"]\n"
	code, out := checkRun(t, base+`capture:
  hep: {address: 10.0.0.5:9060, transport: tcp, agent_id: 2001, auth_key_file: `+key+`}
  methods: [INVITE, BYE]
  direction: in
  sample_rate: 0.25
  ring_size: 100000
  traces: {max_active: 2, max_messages: 10, max_duration: 30s}
`, "--hep", "10.0.0.6:9061")
	want := "viaduct: capture hep=tcp:10.0.0.6:9061 agent_id=2001 auth_key=true methods=INVITE,BYE direction=in sample_rate=0.25 ring_size=100000 traces=max_active:2,max_messages:10,max_duration:30s\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("--check: %d\n%s\nwant the line %q", code, out, want)
	}
	code, out = checkRun(t, base)
	if want := "viaduct: capture hep=off agent_id=0 auth_key=false methods=all direction=both sample_rate=1 ring_size=1048576 traces=max_active:4,max_messages:1000,max_duration:5m0s\n"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("defaults: %d\n%s", code, out)
	}
	for yaml, msg := range map[string]string{
		"capture: {sample_rate: 1.5}":                   "capture.sample_rate: must be between 0 and 1, got 1.5",
		"capture: {hep: {address: homer:9060}}":         `capture.hep.address: "homer:9060" is not an ip:port address`,
		"capture: {methods: [INVITE, FOO]}":             `capture.methods[1]: "FOO" is not one of`,
		"capture: {hep: {transport: sctp}}":             `capture.hep.transport: "sctp" is not one of udp, tcp`,
		"capture: {traces: {max_duration: 2h}}":         "capture.traces.max_duration: must be 1s to 1h0m0s, got 2h0m0s",
		"capture: {ring_size: 1024}":                    "capture.ring_size: must be 65536 to 268435456 bytes, got 1024",
		"capture: {hep: {auth_key_file: /nonexistent}}": "capture.hep.auth_key_file: open /nonexistent",
		"capture: {sample_rate: all}":                   "line 3: cannot unmarshal !!str `all` into float64",
	} {
		if code, out := checkRun(t, base+yaml+"\n"); code != 2 || !strings.Contains(out, msg) {
			t.Errorf("%s: exit %d\n%s\nwant 2 and %q", yaml, code, out, msg)
		}
	}
	if code, out := checkRun(t, base, "--hep", "10.0.0.5"); code != 2 || !strings.Contains(out, "capture.hep.address") {
		t.Errorf("--hep without a port: %d %s", code, out)
	}
}

// A reload checks the capture section and names a change of it as needing
// a restart.
func TestCaptureReload(t *testing.T) {
	boot := &fileConfig{}
	next := &fileConfig{Capture: capture.Config{HEP: capture.HEPConfig{Address: "10.0.0.5:9060"}}}
	if got := restartOnly(boot, next); !slices.Equal(got, []string{"capture"}) {
		t.Errorf("restartOnly = %v, want [capture]", got)
	}
	if got := restartOnly(next, next); len(got) != 0 {
		t.Errorf("restartOnly of the same section = %v", got)
	}
	bad := &fileConfig{Capture: capture.Config{Direction: "up"}}
	if err := checkCapture(bad); err == nil || !strings.HasPrefix(err.Error(), "capture.direction: ") {
		t.Errorf("checkCapture: %v", err)
	}
}
