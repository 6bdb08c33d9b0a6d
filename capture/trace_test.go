package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// traceServer serves the trace endpoints of c as cmd/viaduct mounts them.
func traceServer(t *testing.T, c *Capture) *httptest.Server {
	mux := http.NewServeMux()
	ts := c.Traces()
	mux.Handle("POST /api/v1/traces", ts.ArmHandler())
	mux.Handle("GET /api/v1/traces", ts.ListHandler())
	mux.Handle("GET /api/v1/traces/{id}", ts.GetHandler())
	mux.Handle("DELETE /api/v1/traces/{id}", ts.StopHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func request(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

func TestTraceAPIValidates(t *testing.T) {
	c, _, _ := newTestCapture(t, Config{Traces: TraceLimits{MaxActive: 1, MaxMessages: 50, MaxDuration: time.Minute}})
	srv := traceServer(t, c)
	for body, reason := range map[string]string{
		``:                              "body",
		`{"call_id": "a", "user": "b"}`: "exactly one of call_id and user",
		`{}`:                            "exactly one of call_id and user",
		`{"call_id": "a b"}`:            "white space",
		`{"user": "alice@example.com"}`: "user part",
		`{"call_id": "` + strings.Repeat("x", 300) + `"}`: "longer than 256",
		`{"call_id": "a", "max_messages": 51}`:            "max_messages must be 1 to 50",
		`{"call_id": "a", "max_messages": -1}`:            "max_messages must be positive",
		`{"call_id": "a", "duration": "2m"}`:              "duration must be 1s to 1m0s",
		`{"call_id": "a", "duration": "soon"}`:            "Go duration",
		`{"call_id": "a", "duration": "-1s"}`:             "positive",
		`{"call_id": "a", "color": "red"}`:                "unknown field",
		`{"call_id": "a"} {"call_id": "b"}`:               "one JSON object",
	} {
		code, got, _ := request(t, "POST", srv.URL+"/api/v1/traces", body)
		if code != http.StatusBadRequest || !strings.Contains(got, reason) {
			t.Errorf("POST %s: %d %s, want 400 with %q", body, code, got, reason)
		}
	}
	if code, got, _ := request(t, "POST", srv.URL+"/api/v1/traces", `{"call_id": "a"}`); code != http.StatusCreated {
		t.Fatalf("arm: %d %s", code, got)
	}
	if code, got, _ := request(t, "POST", srv.URL+"/api/v1/traces", `{"call_id": "b"}`); code != http.StatusTooManyRequests || !strings.Contains(got, "max_active is 1") {
		t.Errorf("second trace over max_active 1: %d %s", code, got)
	}
	for _, p := range []string{"/api/v1/traces/nosuch", "/api/v1/traces/nosuch.pcap"} {
		if code, _, _ := request(t, "GET", srv.URL+p, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

// A trace armed through the API keeps the messages of its call, both
// directions, up to max_messages, and serves them as text and as pcap.
func TestTraceAPICallID(t *testing.T) {
	c, tp, _ := newTestCapture(t, Config{}) // no collector: traces alone
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := traceServer(t, c)
	code, body, hdr := request(t, "POST", srv.URL+"/api/v1/traces", `{"call_id": "traced@x", "max_messages": 3, "duration": "30s"}`)
	if code != http.StatusCreated {
		t.Fatalf("arm: %d %s", code, body)
	}
	var info TraceInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.ID == "" || !info.Active || info.Max != 3 || hdr.Get("Location") != "/api/v1/traces/"+info.ID {
		t.Fatalf("arm answer %s (%v), Location %q", body, err, hdr.Get("Location"))
	}
	pass(tp, invite("other@x", "alice"), transport.UDP)
	pass(tp, invite("traced@x", "alice"), transport.UDP)
	pass(tp, invite("traced@x", "alice"), transport.TCP) // the third message ends the trace
	testenv.WaitFor(t, "the trace to end", 10*time.Second, func() bool { return c.Traces().Active() == 0 })
	pass(tp, invite("traced@x", "alice"), transport.UDP) // after its end
	c.Close()

	code, text, hdr := request(t, "GET", srv.URL+"/api/v1/traces/"+info.ID, "")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("text: %d %s", code, text)
	}
	lines := regexpLines(text, " -> ")
	want := []string{
		" in  UDP 198.51.100.7:5070 -> 192.0.2.10:5060 (",
		" out UDP 192.0.2.10:5060 -> 192.0.2.21:5060 (",
		" in  TCP 198.51.100.7:5070 -> 192.0.2.10:5060 (",
	}
	if len(lines) != len(want) || !strings.Contains(text, "ended by max_messages") || strings.Contains(text, "other@x") {
		t.Fatalf("trace text:\n%s", text)
	}
	for i := range want {
		if !strings.Contains(lines[i], want[i]) {
			t.Errorf("line %d: %q, want %q", i, lines[i], want[i])
		}
	}
	code, pcap, hdr := request(t, "GET", srv.URL+"/api/v1/traces/"+info.ID+".pcap", "")
	if code != 200 || hdr.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
		t.Fatalf("pcap: %d %v", code, hdr)
	}
	checkPcap(t, []byte(pcap), 3)
}

// regexpLines returns the lines of s that contain sub.
func regexpLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// checkPcap checks the pcap file structure: header, LINKTYPE_RAW, n
// records, each an IPv4 packet with a valid header checksum and the SIP
// message after its UDP or TCP header.
func checkPcap(t *testing.T, b []byte, n int) {
	t.Helper()
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 101 {
		t.Fatalf("pcap header % x", b[:min(len(b), 24)])
	}
	b = b[24:]
	for i := range n {
		if len(b) < 16 {
			t.Fatalf("record %d missing", i)
		}
		incl := int(binary.LittleEndian.Uint32(b[8:]))
		pkt := b[16 : 16+incl]
		b = b[16+incl:]
		if pkt[0] != 0x45 || ipChecksum(pkt[:20]) != 0 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			t.Fatalf("record %d: bad IPv4 header % x", i, pkt[:20])
		}
		l4 := 8
		if pkt[9] == ProtoTCP {
			l4 = 20
		}
		if !bytes.HasPrefix(pkt[20+l4:], []byte("INVITE ")) {
			t.Errorf("record %d: payload %q", i, pkt[20+l4:min(len(pkt), 40+l4)])
		}
	}
	if len(b) != 0 {
		t.Errorf("%d bytes after %d records", len(b), n)
	}
}

func TestTraceByUserAndDuration(t *testing.T) {
	c, tp, _ := newTestCapture(t, Config{})
	now := time.Now()
	info, err := c.Traces().Arm(TraceSpec{User: "bob", Duration: time.Second}, now)
	if err != nil {
		t.Fatal(err)
	}
	pass(tp, invite("c1", "alice"), transport.UDP) // To: bob
	pass(tp, invite("c2", "carol"), transport.UDP) // To: bob as well
	ok := sipMsg("OPTIONS sip:x SIP/2.0\nFrom: <sip:alice@x>;tag=1\nTo: <sip:dave@x>\nCall-ID: c3\nCSeq: 1 OPTIONS")
	pass(tp, ok, transport.UDP)
	for {
		b, flags, ok := tp.ring.next()
		if !ok {
			break
		}
		c.traces.record(b, flags&flagOut != 0)
	}
	tp.ring.release()
	_, msgs, _ := c.Traces().Get(info.ID)
	if len(msgs) != 4 {
		t.Errorf("%d messages for user bob, want 4 (two calls, in and out)", len(msgs))
	}
	c.Traces().expire(now.Add(2 * time.Second))
	if c.Traces().Active() != 0 || c.traces.armed.Load() != nil {
		t.Error("trace still armed after its duration")
	}
	got, _, _ := c.Traces().Get(info.ID)
	if got.Active || got.Ended != "duration" {
		t.Errorf("after its duration: %+v", got)
	}
	if _, err := c.Traces().Stop("nosuch", now); err != ErrTraceNotFound {
		t.Errorf("Stop of an unknown trace: %v", err)
	}
}
