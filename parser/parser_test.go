package parser

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// crlf turns a readable message with "\n" line ends into wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func mustParse(t *testing.T, b []byte) *Message {
	t.Helper()
	var m Message
	if err := Parse(b, &m); err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return &m
}

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSoftphoneInvite(t *testing.T) {
	m := mustParse(t, load(t, "invite_softphone.sip"))
	if !m.IsRequest() || string(m.Method()) != "INVITE" || m.MethodID() != MethodINVITE {
		t.Fatalf("method = %q", m.Method())
	}
	if got := string(m.RequestURI()); got != "sip:bob@biloxi.example.com" {
		t.Errorf("Request-URI = %q", got)
	}
	if got := string(m.CallID()); got != "a84b4c76e66710@pc33.atlanta.example.com" {
		t.Errorf("Call-ID = %q", got)
	}
	num, meth := m.CSeq()
	if num != 314159 || string(meth) != "INVITE" {
		t.Errorf("CSeq = %d %q", num, meth)
	}
	if n, ok := m.MaxForwards(); !ok || n != 70 {
		t.Errorf("Max-Forwards = %d %v", n, ok)
	}
	v := m.TopVia()
	if string(v.Host) != "pc33.atlanta.example.com" || v.Port != 5060 || string(v.Branch) != "z9hG4bK776asdhds" ||
		!v.HasRPort || len(v.RPort) != 0 || !v.HasCookie() || string(v.Transport) != "UDP" ||
		string(v.ProtocolName) != "SIP" || string(v.ProtocolVersion) != "2.0" || !v.First || !v.Last {
		t.Errorf("top Via = %+v", v)
	}
	it := m.Vias()
	var vv Via
	var hosts []string
	for it.Next(&vv) {
		hosts = append(hosts, string(vv.Host))
	}
	if it.Err() != nil || strings.Join(hosts, ",") != "pc33.atlanta.example.com,192.0.2.4" {
		t.Errorf("Vias = %v, %v", hosts, it.Err())
	}
	from, err := m.From()
	if err != nil || string(from.Display) != `"Alice Smith"` || string(from.URI) != "sip:alice@atlanta.example.com" || string(from.Tag) != "1928301774" {
		t.Errorf("From = %+v, %v", from, err)
	}
	to, err := m.To()
	if err != nil || string(to.Display) != "Bob" || to.Tag != nil {
		t.Errorf("To = %+v, %v", to, err)
	}
	rt := m.Routes()
	var a NameAddr
	if !rt.Next(&a) || string(a.URI) != "sip:proxy.atlanta.example.com;lr" || rt.Next(&a) {
		t.Errorf("Route = %q", a.URI)
	}
	var u URI
	if err := ParseURI(a.URI, &u); err != nil || string(u.Host) != "proxy.atlanta.example.com" {
		t.Errorf("Route URI = %+v, %v", u, err)
	}
	if _, lr := u.Param("lr"); !lr {
		t.Error("Route URI lacks lr")
	}
	if ct := string(m.ContentType()); ct != "application/sdp" {
		t.Errorf("Content-Type = %q", ct)
	}
	n, ok := m.ContentLength()
	if !ok || n != len(m.Body()) || !strings.HasPrefix(string(m.Body()), "v=0\r\n") {
		t.Errorf("Content-Length %d, body %d bytes", n, len(m.Body()))
	}
	allow := m.Values(KindAllow)
	count := 0
	for v, ok := allow.Next(); ok; v, ok = allow.Next() {
		count++
		if strings.ContainsAny(string(v), ", ") {
			t.Errorf("Allow value %q not split", v)
		}
	}
	if count != 10 {
		t.Errorf("Allow values = %d, want 10", count)
	}
	if h, ok := m.FindName([]byte("user-agent")); !ok || string(h.Value) != "Zoiper rv2.10.8.2" {
		t.Errorf("User-Agent = %q", h.Value)
	}
	if h, ok := m.FindName([]byte("X-Missing")); ok {
		t.Errorf("found absent header %q", h.Name)
	}
}

func TestResponse(t *testing.T) {
	m := mustParse(t, load(t, "ok200_invite.sip"))
	if m.IsRequest() || m.StatusCode() != 200 || string(m.Reason()) != "OK" || m.Method() != nil {
		t.Fatalf("status %d %q", m.StatusCode(), m.Reason())
	}
	it := m.Vias()
	n, err := it.Count()
	if n != 3 || err != nil {
		t.Errorf("Via count = %d, %v", n, err)
	}
	rr := m.RecordRoutes()
	var a NameAddr
	var uris []string
	for rr.Next(&a) {
		uris = append(uris, string(a.URI))
	}
	if len(uris) != 2 || uris[1] != "sip:bigbox3.site3.atlanta.example.com;lr" {
		t.Errorf("Record-Route = %q", uris)
	}
	to, _ := m.To()
	if string(to.Tag) != "a6c85cf" {
		t.Errorf("To tag = %q", to.Tag)
	}
	if v := m.TopVia(); string(v.Received) != "192.0.2.3" || v.Port != 0 {
		t.Errorf("top Via = %+v", v)
	}
}

func TestCompactForms(t *testing.T) {
	m := mustParse(t, load(t, "invite_compact.sip"))
	if string(m.CallID()) != "a84b4c76e66710@pc33.atlanta.example.com" {
		t.Errorf("i: Call-ID = %q", m.CallID())
	}
	if n, ok := m.ContentLength(); !ok || n != len(m.Body()) || n == 0 {
		t.Errorf("l: = %d %v", n, ok)
	}
	if string(m.ContentType()) != "application/sdp" {
		t.Errorf("c: = %q", m.ContentType())
	}
	if h, ok := m.Find(KindSupported); !ok || string(h.Value) != "timer" || string(h.Name) != "k" {
		t.Errorf("k: = %+v", h)
	}
	c := m.Contacts()
	var a NameAddr
	if !c.Next(&a) || string(a.URI) != "sip:alice@pc33.atlanta.example.com" {
		t.Errorf("m: = %q", a.URI)
	}
	// Every compact form maps to the kind of its long name.
	long := map[byte]string{'i': "Call-ID", 'm': "Contact", 'e': "Content-Encoding", 'l': "Content-Length",
		'c': "Content-Type", 'f': "From", 's': "Subject", 't': "To", 'v': "Via", 'k': "Supported", 'o': "Event",
		'u': "Allow-Events", 'r': "Refer-To", 'b': "Referred-By", 'x': "Session-Expires", 'y': "Identity",
		'a': "Accept-Contact", 'j': "Reject-Contact", 'd': "Request-Disposition"}
	for c, name := range long {
		for _, n := range []string{string(c), strings.ToUpper(string(c))} {
			if k := kindOf([]byte(n)); k.String() != name {
				t.Errorf("compact %q -> %q, want %q", n, k, name)
			}
		}
		if k := kindOf([]byte(strings.ToUpper(name))); k.String() != name {
			t.Errorf("%q -> %q", strings.ToUpper(name), k)
		}
	}
	for k := KindVia; k < numKinds; k++ {
		if got := kindOf([]byte(strings.ToLower(k.String()))); got != k {
			t.Errorf("kindOf(%q) = %v", strings.ToLower(k.String()), got)
		}
	}
	for _, n := range []string{"Q", "Vias", "Tox", "Call-IDs", "Pathx", "Contacts"} {
		if k := kindOf([]byte(n)); k != KindOther {
			t.Errorf("kindOf(%q) = %v, want other", n, k)
		}
	}
}

const base = `INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1
From: <sip:a@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: c1
CSeq: 1 INVITE
Content-Length: 0

`

func TestFoldingAndMultiValueVia(t *testing.T) {
	b := crlf(`INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP first.example.com;branch=z9hG4bKa ,
   SIP/2.0/TCP second.example.com:5070
	;branch=z9hG4bKb, SIP / 2.0 / SCTP [2001:db8::9]:5080;branch=z9hG4bKc
v: SIP/2.0/UDP fourth.example.com;branch=z9hG4bKd
Subject: I know you're there,
 pick up the phone
  and talk to me!
From: <sip:a@example.com>;tag=1
To  :  <sip:bob@example.com>
Call-ID:c1
CSeq: 1 INVITE
Content-Length: 0

`)
	m := mustParse(t, b)
	it := m.Vias()
	var v Via
	type want struct {
		host, transport, branch string
		port                    int
		first, last, v6         bool
	}
	wants := []want{
		{"first.example.com", "UDP", "z9hG4bKa", 0, true, false, false},
		{"second.example.com", "TCP", "z9hG4bKb", 5070, false, false, false},
		{"2001:db8::9", "SCTP", "z9hG4bKc", 5080, false, true, true},
		{"fourth.example.com", "UDP", "z9hG4bKd", 0, true, true, false},
	}
	i := 0
	for it.Next(&v) {
		if i >= len(wants) {
			t.Fatalf("extra Via %q", v.Host)
		}
		w := wants[i]
		if string(v.Host) != w.host || string(v.Transport) != w.transport || string(v.Branch) != w.branch ||
			v.Port != w.port || v.First != w.first || v.Last != w.last || v.IPv6 != w.v6 {
			t.Errorf("Via %d = host %q tr %q br %q port %d first %v last %v v6 %v", i, v.Host, v.Transport, v.Branch, v.Port, v.First, v.Last, v.IPv6)
		}
		if !v.Last {
			// NextStart points at the next via-parm's protocol name.
			if rest := string(b[v.NextStart:]); !strings.HasPrefix(rest, "SIP") {
				t.Errorf("Via %d NextStart at %q", i, rest[:10])
			}
		}
		if got := string(b[v.Start:v.End]); !strings.HasPrefix(got, "SIP") || !strings.HasSuffix(got, w.branch) {
			t.Errorf("Via %d Start..End = %q", i, got)
		}
		i++
	}
	if it.Err() != nil || i != 4 {
		t.Fatalf("got %d Vias, err %v", i, it.Err())
	}
	if n := m.ViaCount(); n != 4 {
		t.Errorf("ViaCount = %d, want 4", n)
	}
	h, _ := m.Find(KindSubject)
	if got := string(h.Value); !strings.HasPrefix(got, "I know you're there,") || !strings.HasSuffix(got, "talk to me!") {
		t.Errorf("folded Subject = %q", got)
	}
	if string(b[h.Start:h.End]) != "Subject: I know you're there,\r\n pick up the phone\r\n  and talk to me!\r\n" {
		t.Errorf("Subject line = %q", b[h.Start:h.End])
	}
	if string(m.CallID()) != "c1" {
		t.Errorf("Call-ID = %q", m.CallID())
	}
	to, err := m.To()
	if err != nil || string(to.URI) != "sip:bob@example.com" {
		t.Errorf("To with spaces before colon = %+v %v", to, err)
	}
}

func TestRFC2543(t *testing.T) {
	// No branch, no cookie, a comment, hidden, ttl, maddr, no Max-Forwards.
	b := crlf(`INVITE sip:watson@boston.bell-tel.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;hidden;ttl=16;maddr=224.2.0.1 (Acme old phone)
Via: SIP/2.0/UDP kton.bell-tel.com
From: A. Bell <sip:a.g.bell@bell-tel.com>
To: T. Watson <sip:watson@bell-tel.com>
Call-ID: 3298420296@kton.bell-tel.com
CSeq: 1 INVITE
Subject: Mr. Watson, come here.
Content-Length: 0

`)
	m := mustParse(t, b)
	v := m.TopVia()
	if v.Branch != nil || v.HasCookie() || !v.Hidden || string(v.TTL) != "16" || string(v.Maddr) != "224.2.0.1" {
		t.Errorf("2543 Via = %+v", v)
	}
	if !strings.HasSuffix(string(b[v.Start:v.End]), "(Acme old phone)") {
		t.Errorf("comment not part of via-parm: %q", b[v.Start:v.End])
	}
	if _, ok := m.MaxForwards(); ok {
		t.Error("Max-Forwards reported present")
	}
	from, err := m.From()
	if err != nil || string(from.Display) != "A. Bell" || from.Tag != nil {
		t.Errorf("From = %+v %v", from, err)
	}
}

func TestViaParams(t *testing.T) {
	cases := []struct {
		via                           string
		host, received, rport, branch string
		port                          int
		hasRPort, v6                  bool
	}{
		{"SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx", "192.0.2.1", "", "", "z9hG4bKx", 0, true, false},
		{"SIP/2.0/UDP 192.0.2.1:5062;rport=5070;received=198.51.100.1;branch=z9hG4bKy", "192.0.2.1", "198.51.100.1", "5070", "z9hG4bKy", 5062, true, false},
		{"SIP/2.0/UDP [::1]:5060;received=2001:db8::1;branch=z9hG4bKz", "::1", "2001:db8::1", "", "z9hG4bKz", 5060, false, true},
		{"sip/2.0/udp host.example.com ; BRANCH = z9hG4bKw ; RPort", "host.example.com", "", "", "z9hG4bKw", 0, true, false},
		{`SIP/2.0/UDP h;branch=z9hG4bKq;x="a;b"`, "h", "", "", "z9hG4bKq", 0, false, false},
	}
	for _, c := range cases {
		m := mustParse(t, crlf(strings.Replace(base, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", c.via, 1)))
		v := m.TopVia()
		if string(v.Host) != c.host || string(v.Received) != c.received || string(v.RPort) != c.rport ||
			string(v.Branch) != c.branch || v.Port != c.port || v.HasRPort != c.hasRPort || v.IPv6 != c.v6 {
			t.Errorf("%s:\n got host %q recv %q rport %q(%v) branch %q port %d v6 %v", c.via, v.Host, v.Received, v.RPort, v.HasRPort, v.Branch, v.Port, v.IPv6)
		}
		// Offsets of every parameter value point into the message.
		if v.Branch != nil && string(m.Bytes()[m.Offset(v.Branch):m.Offset(v.Branch)+len(v.Branch)]) != c.branch {
			t.Errorf("Offset(branch) wrong for %s", c.via)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		msg  string
		want *Error
	}{
		{"empty", "\r\n\r\n", ErrEmpty},
		{"no start line end", "INVITE sip:a@b SIP/2.0", ErrBadStartLine},
		{"garbage", "hello world\r\n\r\n", ErrBadStartLine},
		{"version 3", strings.Replace(base, "SIP/2.0\n", "SIP/3.0\n", 1), ErrBadVersion},
		{"response version", "SIP/1.0 200 OK\nVia: SIP/2.0/UDP h\n\n", ErrBadVersion},
		{"bad status", "SIP/2.0 2x0 OK\n\n", ErrBadStatus},
		{"status 99", "SIP/2.0 099 OK\n\n", ErrBadStatus},
		{"missing Via", strings.Replace(base, "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n", "", 1), ErrMissingVia},
		{"missing From", strings.Replace(base, "From: <sip:a@example.com>;tag=1\n", "", 1), ErrMissingFrom},
		{"missing To", strings.Replace(base, "To: <sip:bob@example.com>\n", "", 1), ErrMissingTo},
		{"missing Call-ID", strings.Replace(base, "Call-ID: c1\n", "", 1), ErrMissingCallID},
		{"empty Call-ID", strings.Replace(base, "Call-ID: c1\n", "Call-ID: \n", 1), ErrBadCallID},
		{"missing CSeq", strings.Replace(base, "CSeq: 1 INVITE\n", "", 1), ErrMissingCSeq},
		{"CSeq no method", strings.Replace(base, "CSeq: 1 INVITE", "CSeq: 1", 1), ErrBadCSeq},
		{"CSeq not a number", strings.Replace(base, "CSeq: 1 INVITE", "CSeq: x INVITE", 1), ErrBadCSeq},
		{"CSeq overflow", strings.Replace(base, "CSeq: 1 INVITE", "CSeq: 2147483648 INVITE", 1), ErrBadCSeq},
		{"CSeq method mismatch", strings.Replace(base, "CSeq: 1 INVITE", "CSeq: 1 BYE", 1), ErrCSeqMethodMismatch},
		{"Content-Length text", strings.Replace(base, "Content-Length: 0", "Content-Length: ten", 1), ErrBadContentLength},
		{"Content-Length overflow", strings.Replace(base, "Content-Length: 0", "Content-Length: 99999999999999999999999", 1), ErrBadContentLength},
		{"body too short", strings.Replace(base, "Content-Length: 0", "Content-Length: 10", 1), ErrTruncatedBody},
		{"Max-Forwards text", strings.Replace(base, "Content-Length: 0", "Content-Length: 0\nMax-Forwards: -1", 1), ErrBadMaxForwards},
		{"header without colon", strings.Replace(base, "Call-ID: c1", "Call-ID c1", 1), ErrBadHeader},
		{"header name missing", strings.Replace(base, "Call-ID: c1", ": c1", 1), ErrBadHeader},
		{"NUL in header", strings.Replace(base, "Call-ID: c1", "Call-ID: c\x001", 1), ErrNULInHeader},
		{"NUL in folded line", strings.Replace(base, "Call-ID: c1", "Call-ID: c1\n \x00", 1), ErrNULInHeader},
		{"NUL in last header", strings.TrimSuffix(base, "\n\n") + "\nX-Last: \x00", ErrNULInHeader},
		{"NUL in request line", strings.Replace(base, "sip:bob@example.com", "sip:bob\x00@example.com", 1), ErrBadStartLine},
		{"fold before any header", "INVITE sip:a@b SIP/2.0\n folded: x\n\n", ErrBadHeader},
		{"bad top Via", strings.Replace(base, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "garbage", 1), ErrBadVia},
		{"Via port overflow", strings.Replace(base, "192.0.2.1:5060", "192.0.2.1:65536", 1), ErrBadPort},
		{"Via unterminated quote", strings.Replace(base, "branch=z9hG4bK1", `x="abc`, 1), ErrUnterminatedQuote},
		{"Via trailing comma", strings.Replace(base, "branch=z9hG4bK1", "branch=z9hG4bK1,", 1), ErrBadVia},
		{"request line extra space", strings.Replace(base, "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:bob@example.com  x SIP/2.0", 1), ErrBadStartLine},
	}
	for _, c := range cases {
		var m Message
		err := Parse(crlf(c.msg), &m)
		if err != c.want {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// The 505 and 400 statuses a proxy answers with.
	if ErrBadVersion.Status != 505 || ErrMissingCallID.Status != 400 || ErrMissingCallID.Reason != "Missing Call-ID" {
		t.Error("error statuses changed")
	}
}

func TestAccessorErrors(t *testing.T) {
	b := crlf(strings.Replace(strings.Replace(base, "From: <sip:a@example.com>;tag=1", `From: "Alice <sip:a@example.com>;tag=1`, 1),
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com", 1))
	m := mustParse(t, b)
	if _, err := m.From(); err != ErrUnterminatedQuote {
		t.Errorf("From err = %v", err)
	}
	if _, err := m.To(); err != ErrUnterminatedAngle {
		t.Errorf("To err = %v", err)
	}
	// A malformed lower Via is reported by the iterator, not by Parse.
	b = crlf(strings.Replace(base, "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n", "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\nVia: bogus\n", 1))
	m = mustParse(t, b)
	it := m.Vias()
	n, err := it.Count()
	if n != 1 || err != ErrBadVia {
		t.Errorf("Vias = %d, %v", n, err)
	}
}

func TestBody(t *testing.T) {
	body := "line1\nline2\x00\x01binary\n"
	msg := strings.Replace(base, "Content-Length: 0\n\n", "Content-Length: "+strconv.Itoa(len(body))+"\n\n", 1)
	b := append(crlf(msg), body...)
	b = append(b, "TRAILING GARBAGE"...)
	m := mustParse(t, b)
	if string(m.Body()) != body {
		t.Errorf("body = %q", m.Body())
	}
	// Without Content-Length the body is the rest of the datagram.
	msg = strings.Replace(base, "Content-Length: 0\n", "", 1)
	b = append(crlf(msg), "rest of datagram"...)
	m = mustParse(t, b)
	if string(m.Body()) != "rest of datagram" {
		t.Errorf("body = %q", m.Body())
	}
	if _, ok := m.ContentLength(); ok {
		t.Error("Content-Length present")
	}
	// Bare LF line endings are accepted.
	m = mustParse(t, []byte(base))
	if string(m.CallID()) != "c1" || m.HeadersEnd() != strings.Index(base, "\n\n")+1 {
		t.Errorf("bare LF: Call-ID %q headers end %d", m.CallID(), m.HeadersEnd())
	}
	// Leading keep-alive CRLFs are skipped.
	m = mustParse(t, append([]byte("\r\n\r\n"), crlf(base)...))
	if !m.IsRequest() {
		t.Error("leading CRLF not skipped")
	}
}

func TestHeaderLines(t *testing.T) {
	b := crlf(base)
	m := mustParse(t, b)
	if m.HeadersStart() != len("INVITE sip:bob@example.com SIP/2.0\r\n") {
		t.Errorf("HeadersStart = %d", m.HeadersStart())
	}
	// The header lines tile the header block exactly.
	pos := m.HeadersStart()
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.Start != pos || !strings.HasSuffix(string(b[h.Start:h.End]), "\r\n") {
			t.Errorf("header %d spans %d..%d, want start %d", i, h.Start, h.End, pos)
		}
		pos = h.End
	}
	if pos != m.HeadersEnd() {
		t.Errorf("headers end at %d, HeadersEnd = %d", pos, m.HeadersEnd())
	}
}

func TestTooManyHeaders(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(strings.TrimSuffix(base, "\n"))
	for i := 0; i < MaxHeaders; i++ {
		sb.WriteString("X-Filler: 1\n")
	}
	sb.WriteString("\n")
	var m Message
	if err := Parse(crlf(sb.String()), &m); err != ErrTooManyHeaders {
		t.Errorf("err = %v", err)
	}
}

func TestReuse(t *testing.T) {
	var m Message
	if err := Parse(load(t, "invite_softphone.sip"), &m); err != nil {
		t.Fatal(err)
	}
	if err := Parse(load(t, "ringing180.sip"), &m); err != nil {
		t.Fatal(err)
	}
	if m.IsRequest() || m.StatusCode() != 180 || m.RequestURI() != nil {
		t.Error("state leaked from the previous message")
	}
	if _, ok := m.Find(KindRoute); ok {
		t.Error("Route leaked from the previous message")
	}
	if _, ok := m.MaxForwards(); ok {
		t.Error("Max-Forwards leaked from the previous message")
	}
}

func TestMethodOf(t *testing.T) {
	for i := MethodINVITE; i <= MethodUPDATE; i++ {
		if MethodOf([]byte(i.String())) != i {
			t.Errorf("MethodOf(%q) != %v", i.String(), i)
		}
	}
	if MethodOf([]byte("invite")) != MethodOther || MethodOf([]byte("FOO")) != MethodOther {
		t.Error("MethodOf accepts unknown names")
	}
}

func TestToTag(t *testing.T) {
	cases := map[string]string{
		`<sip:bob@example.com>;tag=abc`:                  "abc",
		`"Bob, \"the\" <boss>" <sip:b@h;tag=no>;tag=yes`: "yes",
		`Bob <sip:b@h>`:           "",
		`sip:b@h;tag=bare`:        "bare",
		`sip:b@h`:                 "",
		`<sip:b@h>;x=1;TAG=upper`: "upper",
		`"open <sip:b@h>;tag=1`:   "",
	}
	for to, want := range cases {
		b := crlf(strings.Replace(base, "To: <sip:bob@example.com>", "To: "+to, 1))
		m := mustParse(t, b)
		if got := string(m.ToTag()); got != want {
			t.Errorf("ToTag(%s) = %q, want %q", to, got, want)
		}
		// ToTag agrees with the full parse wherever the full parse succeeds.
		if a, err := m.To(); err == nil && string(a.Tag) != want {
			t.Errorf("To(%s).Tag = %q, ToTag %q", to, a.Tag, want)
		}
	}
}

func TestViaCountMatchesIterator(t *testing.T) {
	for _, bm := range benchMessages {
		m := mustParse(t, load(t, bm.file))
		it := m.Vias()
		n, err := it.Count()
		if err != nil || n != m.ViaCount() {
			t.Errorf("%s: iterator %d (%v), ViaCount %d", bm.name, n, err, m.ViaCount())
		}
	}
}

// TestKindOfNearMisses checks the hashed classifier where it could go
// wrong: names that share a known name's length, first and last letter but
// differ inside, and every single byte (only letters are compact forms).
func TestKindOfNearMisses(t *testing.T) {
	for k := KindVia; k < numKinds; k++ {
		for i := 1; i < len(k.String())-1; i++ {
			near := []byte(strings.ToLower(k.String()))
			near[i] ^= 0x01
			if got := kindOf(near); got != KindOther {
				t.Errorf("kindOf(%q) = %v, want KindOther", near, got)
			}
		}
	}
	// Case folding must not make other bytes match: '-' | 0x20 is '-',
	// and so is CR | 0x20.
	for _, name := range []string{"Call\rID", "Max\rForwards", "content\rlength", "proxy\rauthorization"} {
		if got := kindOf([]byte(name)); got != KindOther {
			t.Errorf("kindOf(%q) = %v, want KindOther", name, got)
		}
	}
	for c := 0; c < 256; c++ {
		isLetter := 'a' <= c|0x20 && c|0x20 <= 'z'
		if got := kindOf([]byte{byte(c)}); !isLetter && got != KindOther {
			t.Errorf("kindOf(%q) = %v, want KindOther", byte(c), got)
		}
	}
}

func TestParseUint(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  uint64
		want uint64
		ok   bool
	}{
		{"0", 10, 0, true},
		{"65535", 65535, 65535, true},
		{"65536", 65535, 0, false},
		{"2147483647", 1<<31 - 1, 1<<31 - 1, true},
		{"2147483648", 1<<31 - 1, 0, false},
		{"0000000000000000070", 100, 70, true},
		{"9999999999999999999", 1<<63 - 1, 0, false},
		{"18446744073709551615", 1<<63 - 1, 0, false},
		{"", 10, 0, false},
		{"1a", 100, 0, false},
		{"-1", 100, 0, false},
		{" 1", 100, 0, false},
	} {
		got, ok := parseUint([]byte(c.in), c.max)
		if ok != c.ok || ok && got != c.want {
			t.Errorf("parseUint(%q, %d) = %d, %v; want %d, %v", c.in, c.max, got, ok, c.want, c.ok)
		}
	}
}

// TestViaBranchAndToTagSpellings checks the top Via's branch and host and
// the To tag (through ToTag and To) for the unusual spellings any shortcut
// for "SIP/2.0/", "branch=" and ";tag=" must leave to the general parsing.
func TestViaBranchAndToTagSpellings(t *testing.T) {
	for _, c := range []struct{ via, branch, host string }{
		{"SIP/2.0/UDP h;branch=z9hG4bK1", "z9hG4bK1", "h"},
		{"sip/2.0/udp h;BRANCH=z9hG4bK1", "z9hG4bK1", "h"},
		{"SIP / 2.0 / UDP h ; branch = z9hG4bK2", "z9hG4bK2", "h"},
		{"SIP/2.0/UDP h;branch= z9hG4bK3", "z9hG4bK3", "h"},
		{`SIP/2.0/UDP h;branch="q"`, `"q"`, "h"},
		{"SIP/2.0/UDP h;branch=a;branch=b", "b", "h"},
		{"SIP/2.0/UDP h;branchx=a;branch=c", "c", "h"},
	} {
		msg := strings.Replace(base, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", c.via, 1)
		var m Message
		if err := Parse(crlf(msg), &m); err != nil {
			t.Errorf("%q: %v", c.via, err)
			continue
		}
		if v := m.TopVia(); string(v.Branch) != c.branch || string(v.Host) != c.host {
			t.Errorf("%q: branch %q host %q, want %q %q", c.via, v.Branch, v.Host, c.branch, c.host)
		}
	}
	for _, bad := range []string{"SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h;branch=;x", "SIP/2.0/ h;branch=1"} {
		msg := strings.Replace(base, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", bad, 1)
		var m Message
		if err := Parse(crlf(msg), &m); err == nil {
			t.Errorf("%q: parsed, want an error", bad)
		}
	}
	for _, c := range []struct{ to, tag string }{
		{"<sip:b@h>;tag=abc", "abc"},
		{"<sip:b@h>;TAG=abc;x=1", "abc"},
		{"<sip:b@h> ;tag=abc", "abc"},
		{"<sip:b@h>;tag=", ""},
		{`<sip:b@h>;tag="q"`, `"q"`},
		{"<sip:b@h>;tagx=1;tag=2", "2"},
		{"<sip:b@h>;x=1", ""},
	} {
		msg := strings.Replace(base, "To: <sip:bob@example.com>", "To: "+c.to, 1)
		var m Message
		if err := Parse(crlf(msg), &m); err != nil {
			t.Fatalf("%q: %v", c.to, err)
		}
		to, err := m.To()
		if err != nil {
			t.Fatalf("%q: To: %v", c.to, err)
		}
		if got := m.ToTag(); string(got) != c.tag || string(to.Tag) != string(got) {
			t.Errorf("%q: ToTag %q, To().Tag %q, want %q", c.to, got, to.Tag, c.tag)
		}
	}
}
