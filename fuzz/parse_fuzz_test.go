package fuzz

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
)

// addParserSeeds adds the parser's example messages to f's seed corpus.
func addParserSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "parser", "testdata", "*.sip"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no parser seed messages found: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParse asserts that for any input Parse neither panics nor hangs,
// that every offset it reports lies inside the buffer, and that for a
// message that parses every accessor gives the same answer when read twice.
func FuzzParse(f *testing.F) {
	addParserSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m parser.Message
		if err := parser.Parse(b, &m); err != nil {
			if _, ok := err.(*parser.Error); !ok {
				t.Fatalf("Parse returned %T, want *parser.Error", err)
			}
			return
		}
		checkKinds(t, &m)
		first := snapshot(t, &m, b)
		second := snapshot(t, &m, b)
		if !bytes.Equal(first, second) {
			t.Fatalf("accessors changed between reads:\n%q\n%q", first, second)
		}
		// Parsing the same bytes again into a used Message gives the same index.
		var m2 parser.Message
		if err := parser.Parse(b, &m2); err != nil {
			t.Fatalf("second Parse failed: %v", err)
		}
		if third := snapshot(t, &m2, b); !bytes.Equal(first, third) {
			t.Fatal("a second Parse of the same bytes read differently")
		}
	})
}

// compactNames maps every compact header form (RFC 3261 7.3.3, RFC 2543
// section 9) to its long name.
var compactNames = map[byte]string{'v': "Via", 'f': "From", 't': "To", 'i': "Call-ID",
	'l': "Content-Length", 'c': "Content-Type", 'e': "Content-Encoding", 'm': "Contact",
	's': "Subject", 'k': "Supported", 'o': "Event", 'u': "Allow-Events", 'r': "Refer-To",
	'b': "Referred-By", 'x': "Session-Expires", 'y': "Identity", 'a': "Accept-Contact",
	'j': "Reject-Contact", 'd': "Request-Disposition"}

// checkKinds compares the parser's classification of every header line
// with a plain case-insensitive lookup of its name among the known ones,
// and checks that the name is a token followed (after optional white
// space) by the colon.
func checkKinds(t *testing.T, m *parser.Message) {
	t.Helper()
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		want := parser.KindOther
		if len(h.Name) == 1 {
			if long, ok := compactNames[h.Name[0]|0x20]; ok && ('a' <= h.Name[0]|0x20 && h.Name[0]|0x20 <= 'z') {
				want = kindByName(long)
			}
		} else {
			want = kindByName(string(h.Name))
		}
		if h.Kind != want {
			t.Fatalf("header %d %q: kind %v, want %v", i, h.Name, h.Kind, want)
		}
		rest := bytes.TrimLeft(m.Bytes()[h.Start+len(h.Name):h.End], " \t")
		if len(h.Name) == 0 || len(rest) == 0 || rest[0] != ':' {
			t.Fatalf("header %d: name %q is not followed by a colon", i, h.Name)
		}
		for _, c := range h.Name {
			if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte("()<>@,;:\\\"/[]?={}"), c) >= 0 {
				t.Fatalf("header %d: name %q holds %q, not a token character", i, h.Name, c)
			}
		}
	}
}

// kindByName returns the kind whose long name equals name, ignoring case.
func kindByName(name string) parser.HeaderKind {
	for k := parser.KindVia; k.String() != ""; k++ {
		if strings.EqualFold(k.String(), name) {
			return k
		}
	}
	return parser.KindOther
}

// within fails t unless sub lies inside b (an empty nil slice is fine).
func within(t *testing.T, m *parser.Message, b, sub []byte, what string) {
	t.Helper()
	if sub == nil {
		return
	}
	off := m.Offset(sub)
	if off < 0 || off+len(sub) > len(b) || !bytes.Equal(b[off:off+len(sub)], sub) {
		t.Fatalf("%s (%q) is not inside the buffer (offset %d, len %d, buffer %d)", what, sub, off, len(sub), len(b))
	}
}

// snapshot reads every accessor of m, checks that what it returns lies in
// b, and serialises the answers so two reads can be compared.
func snapshot(t *testing.T, m *parser.Message, b []byte) []byte {
	var out bytes.Buffer
	put := func(what string, v []byte) {
		within(t, m, b, v, what)
		out.WriteString(what)
		out.WriteByte('=')
		out.Write(v)
		out.WriteByte('\n')
	}
	putInt := func(what string, n int) {
		out.WriteString(what)
		out.WriteByte('=')
		out.WriteString(itoa(n))
		out.WriteByte('\n')
	}
	put("method", m.Method())
	put("ruri", m.RequestURI())
	put("reason", m.Reason())
	putInt("status", m.StatusCode())
	put("callid", m.CallID())
	num, meth := m.CSeq()
	putInt("cseq", int(num))
	put("cseqmethod", meth)
	mf, _ := m.MaxForwards()
	putInt("maxfwd", mf)
	cl, hasCL := m.ContentLength()
	putInt("cl", cl)
	body := m.Body()
	put("body", body)
	if hasCL && len(body) != cl {
		t.Fatalf("body is %d bytes, Content-Length %d", len(body), cl)
	}
	if m.HeadersStart() > m.HeadersEnd() || m.HeadersEnd() > len(b) {
		t.Fatalf("header block %d..%d outside buffer of %d", m.HeadersStart(), m.HeadersEnd(), len(b))
	}
	prevEnd := m.HeadersStart()
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.Start != prevEnd || h.End < h.Start || h.End > m.HeadersEnd() {
			t.Fatalf("header %d line %d..%d does not follow %d", i, h.Start, h.End, prevEnd)
		}
		prevEnd = h.End
		put("name", h.Name)
		put("value", h.Value)
	}
	top := m.TopVia()
	put("topvia.branch", top.Branch)
	put("topvia.host", top.Host)
	it := m.Vias()
	var v parser.Via
	count := 0
	defer func() {
		if it.Err() == nil && count != m.ViaCount() {
			t.Fatalf("ViaCount %d, iterator found %d", m.ViaCount(), count)
		}
	}()
	for it.Next(&v) {
		count++
		if v.Start < 0 || v.Start > v.End || v.End > len(b) {
			t.Fatalf("Via at %d..%d outside buffer", v.Start, v.End)
		}
		if !v.Last && (v.NextStart <= v.End || v.NextStart > len(b)) {
			t.Fatalf("Via NextStart %d not after End %d", v.NextStart, v.End)
		}
		for _, p := range [][]byte{v.Host, v.Transport, v.Branch, v.Received, v.RPort, v.Maddr, v.TTL, v.Params} {
			put("via", p)
		}
		putInt("via.port", v.Port)
	}
	putErr(&out, it.Err())
	for _, k := range []parser.HeaderKind{parser.KindFrom, parser.KindTo} {
		h, _ := m.Find(k)
		var a parser.NameAddr
		err := parser.ParseNameAddr(h.Value, &a)
		putErr(&out, err)
		if k == parser.KindTo {
			tag := m.ToTag()
			put("totag", tag)
			if err == nil && !bytes.Equal(tag, a.Tag) {
				t.Fatalf("ToTag %q, To().Tag %q", tag, a.Tag)
			}
		}
		put("display", a.Display)
		put("uri", a.URI)
		put("tag", a.Tag)
		var u parser.URI
		putErr(&out, parser.ParseURI(a.URI, &u))
		put("user", u.User)
		put("host", u.Host)
		put("params", u.Params)
		put("headers", u.Headers)
		put("opaque", u.Opaque)
	}
	for _, ai := range []parser.AddrIter{m.Routes(), m.RecordRoutes(), m.Contacts(), m.Paths()} {
		var a parser.NameAddr
		for ai.Next(&a) {
			put("addr", a.URI)
			put("addrparams", a.Params)
		}
		putErr(&out, ai.Err())
	}
	vi := m.Values(parser.KindSupported)
	for val, ok := vi.Next(); ok; val, ok = vi.Next() {
		put("supported", val)
	}
	return out.Bytes()
}

func putErr(out *bytes.Buffer, err error) {
	if err != nil {
		out.WriteString("err=" + err.Error() + "\n")
	}
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return string(buf[i:])
}
