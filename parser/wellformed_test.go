package parser

import (
	"strings"
	"testing"
)

// wellFormedBase is a request that every case below edits in one place.
const wellFormedBase = "INVITE sip:bob@biloxi.example.com SIP/2.0\n" +
	"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKwf1\n" +
	"Max-Forwards: 70\n" +
	"To: Bob <sip:bob@biloxi.example.com>\n" +
	"From: Alice <sip:alice@atlanta.example.com>;tag=1928\n" +
	"Call-ID: wf1@atlanta.example.com\n" +
	"CSeq: 1 INVITE\n" +
	"Content-Length: 0\n\n"

// checkRequest parses a request and reads what a proxy reads of every
// request (the Request-URI, From and To); it returns the first error.
func checkRequest(b []byte) error {
	var m Message
	if err := Parse(b, &m); err != nil {
		return err
	}
	var u URI
	if err := m.ParseRequestURI(&u); err != nil {
		return err
	}
	if _, err := m.From(); err != nil {
		return err
	}
	_, err := m.To()
	return err
}

type wellFormedCase struct {
	name     string
	old, new string // replace old with new in wellFormedBase
	want     *Error // nil: valid
}

func runWellFormed(t *testing.T, cases []wellFormedCase) {
	t.Helper()
	for _, c := range cases {
		if !strings.Contains(wellFormedBase, c.old) {
			t.Fatalf("%s: %q is not in the base request", c.name, c.old)
		}
		b := crlf(strings.Replace(wellFormedBase, c.old, c.new, 1))
		err := checkRequest(b)
		if c.want == nil && err != nil {
			t.Errorf("%s: %v, want valid\n%s", c.name, err, b)
		} else if c.want != nil && err != c.want {
			t.Errorf("%s: %v, want %v\n%s", c.name, err, c.want, b)
		}
	}
}

// RFC 3261 section 20: Call-ID, From, To, CSeq, Max-Forwards and
// Content-Length appear once; on several lines, in compact and long form
// mixed, or as a comma-separated list.
func TestSingletonHeaders(t *testing.T) {
	runWellFormed(t, []wellFormedCase{
		{"two Call-ID lines", "Call-ID: wf1@atlanta.example.com\n", "Call-ID: wf1@atlanta.example.com\nCall-ID: wf2@x\n", ErrMultipleCallID},
		{"Call-ID and i", "Call-ID: wf1@atlanta.example.com\n", "Call-ID: wf1@atlanta.example.com\ni: wf1@atlanta.example.com\n", ErrMultipleCallID},
		{"Call-ID list", "Call-ID: wf1@atlanta.example.com", "Call-ID: wf1@atlanta.example.com, wf2@x", ErrMultipleCallID},
		{"Call-ID with white space", "Call-ID: wf1@atlanta.example.com", "Call-ID: wf1 @atlanta.example.com", ErrBadCallID},
		{"Call-ID folded inside", "Call-ID: wf1@atlanta.example.com", "Call-ID: wf1\n @atlanta.example.com", ErrBadCallID},
		{"Call-ID folded before", "Call-ID: wf1@atlanta.example.com", "Call-ID:\n wf1@atlanta.example.com", nil},
		{"Call-ID word chars", "Call-ID: wf1@atlanta.example.com", "Call-ID: a-.!%*_+`'~()<>:\\\"/[]?{}@host", nil},
		{"two From lines", "From: Alice <sip:alice@atlanta.example.com>;tag=1928\n", "From: Alice <sip:alice@atlanta.example.com>;tag=1928\nf: <sip:eve@x>;tag=9\n", ErrMultipleFrom},
		{"From list", ";tag=1928", ";tag=1928, <sip:eve@x>;tag=9", ErrMultipleFrom},
		{"From addr-spec list", "From: Alice <sip:alice@atlanta.example.com>;tag=1928", "From: sip:alice@atlanta.example.com, sip:eve@x", ErrMultipleFrom},
		{"From quoted comma", "From: Alice <", "From: \"Smith, Alice\" <", nil},
		{"From quoted param comma", ";tag=1928", ";tag=1928;x=\"a,b\"", nil},
		{"two To lines", "To: Bob <sip:bob@biloxi.example.com>\n", "To: Bob <sip:bob@biloxi.example.com>\nt: <sip:eve@x>\n", ErrMultipleTo},
		{"To list", "To: Bob <sip:bob@biloxi.example.com>", "To: Bob <sip:bob@biloxi.example.com>,<sip:eve@x>", ErrMultipleTo},
		{"To comma in bracketed URI", "To: Bob <sip:bob@biloxi.example.com>", "To: <sip:bob,jr@biloxi.example.com>", nil},
		{"two CSeq lines", "CSeq: 1 INVITE\n", "CSeq: 1 INVITE\nCSeq: 2 INVITE\n", ErrMultipleCSeq},
		{"CSeq list", "CSeq: 1 INVITE", "CSeq: 1 INVITE, 2 INVITE", ErrMultipleCSeq},
		{"CSeq list spaced", "CSeq: 1 INVITE", "CSeq: 1 INVITE , 2 INVITE", ErrMultipleCSeq},
		{"two Max-Forwards", "Max-Forwards: 70\n", "Max-Forwards: 70\nMax-Forwards: 70\n", ErrMultipleMaxForwards},
		{"Max-Forwards list", "Max-Forwards: 70", "Max-Forwards: 70, 69", ErrMultipleMaxForwards},
		{"two equal Content-Length", "Content-Length: 0\n", "Content-Length: 0\nContent-Length: 0\n", ErrMultipleContentLength},
		{"l and Content-Length", "Content-Length: 0\n", "l: 0\nContent-Length: 0\n", ErrMultipleContentLength},
		{"two different Content-Length", "Content-Length: 0\n", "Content-Length: 0\nl: 4\n", ErrConflictingContentLength},
		{"Content-Length list equal", "Content-Length: 0", "Content-Length: 0, 0", ErrMultipleContentLength},
		{"Content-Length list different", "Content-Length: 0", "Content-Length: 0,4", ErrConflictingContentLength},
		{"Content-Length list junk", "Content-Length: 0", "Content-Length: 0, x", ErrBadContentLength},
		{"one of each, compact", "To: Bob", "t: Bob", nil},
	})
}

// RFC 3261 19.1 and 25.1: what a Request-URI may be.
func TestRequestURIChecks(t *testing.T) {
	const ruri = "INVITE sip:bob@biloxi.example.com SIP/2.0"
	runWellFormed(t, []wellFormedCase{
		{"angle brackets", ruri, "INVITE <sip:bob@biloxi.example.com> SIP/2.0", ErrRequestURIAngle},
		{"tab inside", ruri, "INVITE sip:bob\t@biloxi.example.com SIP/2.0", ErrRequestURIWhiteSpace},
		{"control inside", ruri, "INVITE sip:bob\x01@biloxi.example.com SIP/2.0", ErrRequestURIWhiteSpace},
		{"IPv6 without brackets", ruri, "INVITE sip:2001:db8::10 SIP/2.0", ErrIPv6NoBrackets},
		{"IPv6 without brackets, user", ruri, "INVITE sip:bob@2001:db8::10:5060 SIP/2.0", ErrIPv6NoBrackets},
		{"IPv6 without brackets, params", ruri, "INVITE sip:bob@fe80::1;transport=udp SIP/2.0", ErrIPv6NoBrackets},
		{"IPv6 leading colons", ruri, "INVITE sip:bob@::1 SIP/2.0", ErrIPv6NoBrackets},
		{"IPv6 reference, bad digit", ruri, "INVITE sip:bob@[2001:db8::g] SIP/2.0", ErrBadIPv6},
		{"IPv6 reference, too few groups", ruri, "INVITE sip:bob@[1:2:3] SIP/2.0", ErrBadIPv6},
		{"IPv6 reference, two ellipses", ruri, "INVITE sip:bob@[1::2::3] SIP/2.0", ErrBadIPv6},
		{"IPv6 reference, empty", ruri, "INVITE sip:bob@[] SIP/2.0", ErrBadIPv6},
		{"IPv6 reference, unterminated", ruri, "INVITE sip:bob@[2001:db8::1 SIP/2.0", ErrBadURI},
		{"URI headers", ruri, "INVITE sip:bob@biloxi.example.com?subject=hi SIP/2.0", ErrRequestURIHeaders},
		{"sips URI headers", ruri, "INVITE sips:bob@biloxi.example.com;transport=tcp?x=y SIP/2.0", ErrRequestURIHeaders},
		{"IPv6 reference", ruri, "INVITE sip:bob@[2001:db8::10]:5060;transport=udp SIP/2.0", nil},
		{"IPv4-mapped reference", ruri, "INVITE sip:bob@[::ffff:192.0.2.1] SIP/2.0", nil},
		{"question mark in user", ruri, "INVITE sip:bob?x@biloxi.example.com SIP/2.0", nil},
		{"tel URI", ruri, "INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0", nil},
		{"urn", ruri, "INVITE urn:service:sos SIP/2.0", nil},
		{"port", ruri, "INVITE sip:bob@192.0.2.4:5070 SIP/2.0", nil},
	})
}

// RFC 3261 25.1: name-addr = [ display-name ] LAQUOT addr-spec RAQUOT,
// display-name = *(token LWS) / quoted-string.
func TestFromToChecks(t *testing.T) {
	const from = "From: Alice <sip:alice@atlanta.example.com>;tag=1928"
	const to = "To: Bob <sip:bob@biloxi.example.com>"
	runWellFormed(t, []wellFormedCase{
		{"tokens and LWS", from, "From: Alice  B.\tSmith-Jones <sip:alice@atlanta.example.com>;tag=1928", nil},
		{"token specials", from, "From: a.b!c%d*e_f+g`h'i~ <sip:alice@atlanta.example.com>;tag=1928", nil},
		{"parenthesis unquoted", from, "From: Alice (Sales) <sip:alice@atlanta.example.com>;tag=1928", ErrBadFromDisplayName},
		{"UTF-8 unquoted", to, "To: J\xc3\xbcrgen <sip:bob@biloxi.example.com>", ErrBadToDisplayName},
		{"UTF-8 quoted", to, "To: \"J\xc3\xbcrgen\" <sip:bob@biloxi.example.com>", nil},
		{"at sign unquoted", to, "To: bob@home <sip:bob@biloxi.example.com>", ErrBadToDisplayName},
		{"folded display name", to, "To: Bob\n Builder <sip:bob@biloxi.example.com>", nil},
		{"space inside angle URI", to, "To: <sip:bob @biloxi.example.com>", ErrToURIWhiteSpace},
		{"space around angle URI", from, "From: < sip:alice@atlanta.example.com >;tag=1928", nil},
		{"space inside addr-spec", from, "From: sip:alice smith@atlanta.example.com;tag=1928", ErrFromURIWhiteSpace},
		{"tab inside angle URI", from, "From: <sip:alice\t@atlanta.example.com>;tag=1928", ErrFromURIWhiteSpace},
		{"quoted-pair NUL", from, "From: \"Al\\\x00ice\" <sip:alice@atlanta.example.com>;tag=1928", nil},
		{"quoted-pair NUL twice", to, "To: \"\\\x00B\\\x00\" <sip:bob@biloxi.example.com>", nil},
		{"quoted-pair NUL on a folded line", to, "To: \"Bob\n \\\x00\" <sip:bob@biloxi.example.com>", nil},
		{"NUL in quotes unescaped", from, "From: \"Al\x00ice\" <sip:alice@atlanta.example.com>;tag=1928", ErrNULInHeader},
		{"NUL after escaped backslash", from, "From: \"Al\\\\\x00ice\" <sip:alice@atlanta.example.com>;tag=1928", ErrNULInHeader},
		{"escaped NUL outside quotes", from, "From: Al\\\x00ice <sip:alice@atlanta.example.com>;tag=1928", ErrNULInHeader},
		{"NUL after the closing quote", from, "From: \"Alice\" \\\x00<sip:alice@atlanta.example.com>;tag=1928", ErrNULInHeader},
	})
}

// Any token is a method (RFC 3261 25.1 extension-method); CR LF alone is a
// keepalive, reported as ErrEmpty.
func TestExtensionMethodAndKeepalive(t *testing.T) {
	const method = "-.!%*_+`'~Xy9"
	b := strings.Replace(wellFormedBase, "INVITE sip:", method+" sip:", 1)
	b = strings.Replace(b, "CSeq: 1 INVITE", "CSeq: 1 "+method, 1)
	m := mustParse(t, crlf(b))
	if string(m.Method()) != method || m.MethodID() != MethodOther {
		t.Errorf("method %q (%v)", m.Method(), m.MethodID())
	}
	var m2 Message
	for _, ka := range []string{"\r\n\r\n", "\r\n"} {
		if err := Parse([]byte(ka), &m2); err != ErrEmpty {
			t.Errorf("%q: %v, want ErrEmpty", ka, err)
		}
	}
}

// A response with a repeated singleton header is refused like a request.
func TestResponseSingletons(t *testing.T) {
	resp := "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\nTo: <sip:b@x>;tag=2\nFrom: <sip:a@x>;tag=1\n" +
		"Call-ID: r1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
	var m Message
	if err := Parse(crlf(resp), &m); err != nil {
		t.Fatal(err)
	}
	for old, want := range map[string]*Error{
		"Call-ID: r1\n":         ErrMultipleCallID,
		"Content-Length: 0\n":   ErrMultipleContentLength,
		"To: <sip:b@x>;tag=2\n": ErrMultipleTo,
	} {
		if err := Parse(crlf(strings.Replace(resp, old, old+old, 1)), &m); err != want {
			t.Errorf("%q twice: %v, want %v", old, err, want)
		}
	}
}

func TestHasSpaceCtlOr(t *testing.T) {
	for n := 0; n < 20; n++ {
		b := []byte(strings.Repeat("x", n))
		if hasSpaceCtlOr(b, ',') {
			t.Errorf("%q: true", b)
		}
		for i := 0; i < n; i++ {
			b[i] = ','
			if !hasSpaceCtlOr(b, ',') || hasSpaceCtlOr(b, ';') != false {
				t.Errorf("%q: comma not found, or found as ';'", b)
			}
			b[i] = 'x'
		}
	}
}

func TestHasSpaceOrCtl(t *testing.T) {
	for _, s := range []string{"", "a", "abcdefgh", "abcdefghijklmnopq~!", "\x7f\x80\xff\x21"} {
		if hasSpaceOrCtl([]byte(s)) {
			t.Errorf("%q: true", s)
		}
	}
	for i := 0; i < 20; i++ {
		for _, c := range []byte{' ', '\t', '\r', '\n', 0, 0x1f, 0x20} {
			b := []byte(strings.Repeat("x", 20))
			b[i] = c
			if !hasSpaceOrCtl(b) {
				t.Errorf("%q: false", b)
			}
		}
	}
}

func TestWellFormedChecksAllocateNothing(t *testing.T) {
	b := crlf(strings.Replace(wellFormedBase, "From: Alice", "From: \"Al\\\x00ice\"", 1))
	if err := checkRequest(b); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _ = checkRequest(b) }); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
}

// The one-pass header parameter scan finds the tag Param finds.
func FuzzTagMatchesParam(f *testing.F) {
	for _, s := range []string{";tag=1", "; tag = 2 ;x", ";TAG", ";tagx=1;tag=5", ";tag", ";x=tag;tag=6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.HasPrefix(s, ";") || strings.ContainsAny(s, ", \t\r\n\"") {
			// Not one header's parameters (they follow the URI's ';'), or
			// quotes and white space, after which Param also reads junk
			// that no ';' separates as a new name; the seeds and the
			// table tests cover the valid spellings with them.
			return
		}
		tag, err := scanHeaderParams([]byte(s), true)
		if err != nil {
			return
		}
		want, ok := Param([]byte(s), "tag")
		if ok != (tag != nil) || string(want) != string(tag) {
			t.Fatalf("%q: tag %q (%v), Param says %q (%v)", s, tag, tag != nil, want, ok)
		}
	})
}

func TestTagSpellings(t *testing.T) {
	for in, want := range map[string]string{
		";tag=1": "1", "; tag = 2 ;x": "2", ";TAG=Ab": "Ab", ";tagx=1;tag=5": "5", ";x=\"a;tag=3\";tag=4": "4",
		";tag=\"q r\"": "\"q r\"", ";tag": "", ";tag ;x=1": "", ";x=tag": "<nil>", ";lr": "<nil>",
	} {
		tag, err := scanHeaderParams([]byte(in), true)
		got := string(tag)
		if tag == nil {
			got = "<nil>"
		}
		if err != nil || got != want {
			t.Errorf("%q: tag %q (%v), want %q", in, got, err, want)
		}
	}
}

// A header whose name ends less than a word before the end of the datagram
// (no line ending after it) is still classified, so a second To there is
// found.
func TestShortNameAtEnd(t *testing.T) {
	b := crlf(strings.TrimSuffix(wellFormedBase, "\n\n")) // no blank line, no final CRLF
	var m Message
	if err := Parse(append(b, "\r\nTo:x"...), &m); err != ErrMultipleTo {
		t.Errorf("second To at the end: %v, want %v", err, ErrMultipleTo)
	}
	if err := Parse(append(b, "\r\nAllow:"...), &m); err != nil {
		t.Fatal(err)
	}
	if h := m.Header(m.NumHeaders() - 1); h.Kind != KindAllow {
		t.Errorf("last header %q: kind %v", h.Name, h.Kind)
	}
}
