package fuzz

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// The fast path's rewrite, fuzzed: for any datagram, Handle must not panic,
// whatever it sends must parse, a forwarded request carries exactly one Via
// more than it came with (Viaduct's, on top), and a forwarded response
// exactly one Via less.

var (
	fzProxy = netip.MustParseAddrPort("192.0.2.10:5060")
	fzUp1   = netip.MustParseAddrPort("192.0.2.21:5060")
	fzUp2   = netip.MustParseAddrPort("192.0.2.22:5060")
	fzFrom  = netip.MustParseAddrPort("198.51.100.7:5060")
)

func fuzzWorker(f *testing.F) (*fastpath.Engine, *fastpath.Worker) {
	e, err := fastpath.New(fastpath.Config{
		Listen:         []netip.AddrPort{fzProxy},
		Upstreams:      []netip.AddrPort{fzUp1, fzUp2},
		RecordRoute:    true,
		Path:           true,
		Secret:         []byte("fuzzing-secret-0123456789"),
		MaxMessageSize: 4096,
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	return e, e.NewWorker()
}

// viaList returns every via-parm of a parsed message, or ok=false when a
// lower Via is malformed.
func viaList(m *parser.Message) (vias []string, ok bool) {
	it := m.Vias()
	var v parser.Via
	b := m.Bytes()
	for it.Next(&v) {
		vias = append(vias, string(b[v.Start:v.End]))
	}
	return vias, it.Err() == nil
}

// addRewriteSeeds adds the parser's example messages (the corpus in
// testdata/fuzz/FuzzRewrite* is added by the fuzzing engine itself).
func addRewriteSeeds(f *testing.F, add func([]byte)) {
	files, _ := filepath.Glob(filepath.Join("..", "parser", "testdata", "*.sip"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

var seedInvite = crlf(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
Route: <sip:192.0.2.10;lr>, <sip:ss2.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Content-Length: 0

`)

var seed2543 = crlf(`INVITE sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/UDP oldphone.example.com:5060 (old stack), SIP/2.0/UDP 10.0.0.1
f: "Old" <sip:old@example.com>;tag=55
t: <sip:carol@chicago.example.com>
i: 2543@old
CSeq: 1 INVITE

`)

// FuzzRewriteRequest feeds any datagram to Handle as if from a client.
func FuzzRewriteRequest(f *testing.F) {
	e, w := fuzzWorker(f)
	addRewriteSeeds(f, func(b []byte) { f.Add(b, false) })
	f.Add(seedInvite, false)
	f.Add(seedInvite, true)
	f.Add(seed2543, false)
	f.Add(crlf("REGISTER sip:registrar.example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5:5060;branch=z9hG4bKr1;rport\nPath: <sip:edge.example.com;lr>\nTo: <sip:a@b>\nFrom: <sip:a@b>;tag=1\nCall-ID: r\nCSeq: 1 REGISTER\nContact: <sip:a@10.1.1.5>\n\n"), false)
	f.Add(crlf("INVITE sip:a@10.1.1.5 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKp1\nRoute: <sip:192.0.2.10;lr;received=[2001:db8::7]:40112>,<sip:192.0.2.10;lr;received=198.51.100.7:4>\nTo: <sip:a@b>\nFrom: <sip:c@d>;tag=2\nCall-ID: p\nCSeq: 1 INVITE\n\n"), true)
	f.Add(crlf("BYE sip:192.0.2.10:5060;lr SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.21\nRoute: <sip:a@203.0.113.1>\nTo: <sip:a@b>;tag=1\nFrom: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 2 BYE\n\n"), true)
	// The classes Viaduct refuses, and valid spellings next to them.
	for _, s := range []string{
		"INVITE <sip:a@b> SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw1\nTo: <sip:a@b>\nFrom: <sip:c@d>;tag=1\nCall-ID: w1\nCSeq: 1 INVITE\n\n",
		"INVITE sip:2001:db8::10 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw2\nTo: <sip:a@b>\nFrom: <sip:c@d>;tag=1\nCall-ID: w2\nCSeq: 1 INVITE\n\n",
		"INVITE sip:a@[2001:db8::10]?x=y SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw3\nTo: <sip:a@b>\nFrom: <sip:c@d>;tag=1\nCall-ID: w3\nCSeq: 1 INVITE\n\n",
		"INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw4\nTo: A (x) <sip:a@b>\nFrom: \"C\\\x00\" <sip:c@d>;tag=1\ni: w4\nCall-ID: w4\nCSeq: 1 INVITE\nl: 0\nContent-Length: 0\n\n",
		"INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw5\nTo: <sip:a@b>, <sip:e@f>\nFrom: sip:c d@e;tag=1\nCall-ID: w5, w6\nCSeq: 1 INVITE, 2 INVITE\nMax-Forwards: 70, 69\n\n",
		"X.Y-Z! sip:a@b SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.5;branch=z9hG4bKw6\nTo: \"A, B\" <sip:a,b@c>\nFrom: \"C\" <sip:c@d>;tag=1\nCall-ID: w6\nCSeq: 1 X.Y-Z!\n\n",
		"\r\n\r\n",
	} {
		f.Add(crlf(s), false)
	}
	for _, ruri := range []string{"sip:a@0.0.0.0", "sip:a@[ff02::1]", "sip:a@255.255.255.255", "sip:a@198.51.100.7;maddr=239.1.1.1"} {
		f.Add(crlf("INVITE "+ruri+" SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKu1\nTo: <sip:a@b>\nFrom: <sip:c@d>;tag=2\nCall-ID: u\nCSeq: 1 INVITE\n\n"), true)
	}
	out := &fastpath.Output{Buf: make([]byte, 0, e.OutputBufferSize())}
	f.Fuzz(func(t *testing.T, in []byte, fromUpstream bool) {
		from := fzFrom
		if fromUpstream {
			from = fzUp1
		}
		a := w.Handle(in, udpFrom(from), out)
		if len(out.Buf) > len(in)+1024 {
			t.Fatalf("output grew by %d bytes", len(out.Buf)-len(in))
		}
		var mi parser.Message
		inErr := parser.Parse(in, &mi)
		switch a {
		case fastpath.ActionDrop, fastpath.ActionLocal:
			return
		case fastpath.ActionReply:
			if !bytes.HasPrefix(out.Buf, []byte("SIP/2.0 ")) {
				t.Fatalf("reply does not start with a status line: %q", out.Buf)
			}
			if inErr != nil || !mi.IsRequest() || mi.MethodID() == parser.MethodACK {
				if inErr == nil {
					t.Fatalf("answered a response or an ACK: %q", in)
				}
				return // a reply to a broken request lacks what it lacked
			}
			var mo parser.Message
			if err := parser.Parse(out.Buf, &mo); err != nil {
				t.Fatalf("reply does not parse (%v):\n%q\nto:\n%q", err, out.Buf, in)
			}
			vin, ok1 := viaList(&mi)
			vout, ok2 := viaList(&mo)
			if ok1 && ok2 && len(vin) != len(vout) {
				t.Fatalf("reply has %d Vias, request %d", len(vout), len(vin))
			}
			return
		}
		// Forwarded: the input parsed, the output parses and has one Via
		// more, ours.
		if inErr != nil {
			t.Fatalf("forwarded a message the parser refuses (%v): %q", inErr, in)
		}
		var mo parser.Message
		if err := parser.Parse(out.Buf, &mo); err != nil {
			t.Fatalf("forwarded request does not parse (%v):\n%q\nfrom:\n%q", err, out.Buf, in)
		}
		if !mi.IsRequest() || !mo.IsRequest() {
			t.Fatalf("a response took the request path")
		}
		vin, ok1 := viaList(&mi)
		vout, ok2 := viaList(&mo)
		if ok1 && ok2 {
			if len(vout) != len(vin)+1 {
				t.Fatalf("forwarded request has %d Vias, input %d:\n%q", len(vout), len(vin), out.Buf)
			}
			if !strings.HasPrefix(vout[0], "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKvd1") {
				t.Fatalf("top Via is not ours: %q", vout[0])
			}
			for i := 2; i < len(vout); i++ {
				if vout[i] != vin[i-1] {
					t.Fatalf("Via %d changed: %q -> %q", i, vin[i-1], vout[i])
				}
			}
		}
		if !bytes.Equal(mi.Body(), mo.Body()) {
			t.Fatalf("body changed")
		}
		if !fromUpstream && out.To != fzUp1 && out.To != fzUp2 {
			t.Fatalf("a client's request went to %v, not an upstream", out.To)
		}
		checkWellFormed(t, &mo, out.To, out.Buf)
	})
}

// checkWellFormed fails when a forwarded request is one Viaduct must refuse
// (see "What Viaduct refuses" in the README) or goes where Viaduct never
// sends.
func checkWellFormed(t *testing.T, m *parser.Message, to netip.AddrPort, b []byte) {
	t.Helper()
	var u parser.URI
	if err := m.ParseRequestURI(&u); err != nil {
		t.Fatalf("forwarded a request whose Request-URI is refused (%v):\n%q", err, b)
	}
	if err := m.CheckFrom(); err != nil {
		t.Fatalf("forwarded a request whose From is refused (%v):\n%q", err, b)
	}
	if _, err := m.To(); err != nil {
		t.Fatalf("forwarded a request whose To is refused (%v):\n%q", err, b)
	}
	if a := to.Addr(); a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		t.Fatalf("forwarded to %v:\n%q", to, b)
	}
}

// FuzzRewriteResponse forwards a request through Viaduct, builds a response
// to it with fuzzed status and extra header bytes, and feeds it back: a
// forwarded response must parse, carry exactly one Via less, the client's
// Vias unchanged, and go to the client. It also feeds the extra bytes alone
// as if from an upstream: a response must never be forwarded with a Via not
// removed, a request (an upstream's, routed by its Route or Request-URI)
// only with one Via added.
func FuzzRewriteResponse(f *testing.F) {
	e, w := fuzzWorker(f)
	f.Add(seedInvite, uint16(200), []byte("Contact: <sip:bob@192.0.2.99>\r\n"))
	f.Add(seed2543, uint16(486), []byte(""))
	f.Add(seedInvite, uint16(180), []byte("Record-Route: <sip:192.0.2.10:5060;lr>\r\n"))
	f.Add(seedInvite, uint16(100), []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKvd10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"))
	fwd := &fastpath.Output{Buf: make([]byte, 0, e.OutputBufferSize())}
	out := &fastpath.Output{Buf: make([]byte, 0, e.OutputBufferSize())}
	f.Fuzz(func(t *testing.T, req []byte, status uint16, extra []byte) {
		// Raw: any datagram from an upstream.
		if a := w.Handle(extra, udpFrom(fzUp1), out); a == fastpath.ActionForward {
			var mi, mo parser.Message
			if parser.Parse(extra, &mi) != nil || parser.Parse(out.Buf, &mo) != nil {
				t.Fatalf("forwarded an unparsable message")
			}
			vin, ok1 := viaList(&mi)
			vout, ok2 := viaList(&mo)
			want := len(vin) - 1
			if mi.IsRequest() {
				want = len(vin) + 1
			}
			if ok1 && ok2 && len(vout) != want {
				t.Fatalf("raw message from an upstream (request %v): %d Vias in, %d out", mi.IsRequest(), len(vin), len(vout))
			}
		}
		if w.Handle(req, udpFrom(fzFrom), fwd) != fastpath.ActionForward {
			return
		}
		var mf parser.Message
		if err := parser.Parse(fwd.Buf, &mf); err != nil {
			t.Fatalf("forwarded request does not parse: %v", err)
		}
		code := 100 + int(status)%600
		var resp bytes.Buffer
		resp.WriteString("SIP/2.0 ")
		resp.WriteString(strings.TrimLeft(string(rune('0'+code/100))+string(rune('0'+code/10%10))+string(rune('0'+code%10)), ""))
		resp.WriteString(" Fuzz\r\n")
		fb := fwd.Buf
		for i := 0; i < mf.NumHeaders(); i++ {
			h := mf.Header(i)
			switch h.Kind {
			case parser.KindVia, parser.KindFrom, parser.KindTo, parser.KindCallID, parser.KindCSeq, parser.KindRecordRoute:
				resp.Write(fb[h.Start:h.End])
			}
		}
		if !bytes.Contains(extra, []byte("\n\r\n")) && !bytes.Contains(extra, []byte("\n\n")) {
			resp.Write(extra) // extra header lines, if they are lines
		}
		resp.WriteString("Content-Length: 0\r\n\r\n")
		rb := resp.Bytes()
		var mr parser.Message
		if parser.Parse(rb, &mr) != nil {
			return // the extra bytes broke it: not this property's concern
		}
		vr, ok := viaList(&mr)
		if !ok {
			return
		}
		a := w.Handle(rb, udpFrom(fwd.To), out)
		if a != fastpath.ActionForward {
			// Only a Via below ours that the extra bytes changed (a Via
			// line among them, placed after ours) may make it fail.
			if len(extra) == 0 {
				t.Fatalf("genuine response not forwarded: %v (%v)\n%q", a, out.Drop, rb)
			}
			return
		}
		var mo parser.Message
		if err := parser.Parse(out.Buf, &mo); err != nil {
			t.Fatalf("forwarded response does not parse (%v):\n%q", err, out.Buf)
		}
		vo, ok := viaList(&mo)
		if !ok || len(vo) != len(vr)-1 {
			t.Fatalf("response: %d Vias in, %d out", len(vr), len(vo))
		}
		for i := range vo {
			if vo[i] != vr[i+1] {
				t.Fatalf("Via %d changed: %q -> %q", i, vr[i+1], vo[i])
			}
		}
	})
}

// udpFrom is a datagram's source on listener 0.
func udpFrom(a netip.AddrPort) transport.Peer {
	return transport.Peer{Addr: a, Kind: transport.UDP}
}
