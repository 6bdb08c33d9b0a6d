package parser

import "testing"

// benchMessages are the six messages of the parser benchmarks; the same
// files feed the side-by-side comparison in bench/compare.
var benchMessages = []struct{ name, file string }{
	{"InviteSoftphone", "invite_softphone.sip"},
	{"OK200Invite", "ok200_invite.sip"},
	{"RegisterDigest", "register_digest.sip"},
	{"OptionsKeepalive", "options_keepalive.sip"},
	{"Ringing180", "ringing180.sip"},
	{"InviteCompact", "invite_compact.sip"},
}

// ProxyFields is what a stateless proxy reads of every message: method or
// status, Call-ID, top Via branch and sent-by, Via count, CSeq,
// Max-Forwards, Content-Length and the To tag. It returns a checksum so the
// compiler cannot drop the work.
func proxyFields(m *Message) int {
	n := 0
	if m.IsRequest() {
		n += len(m.Method())
	} else {
		n += m.StatusCode()
	}
	n += len(m.CallID())
	v := m.TopVia()
	n += len(v.Branch) + len(v.Host) + v.Port
	n += m.ViaCount()
	num, meth := m.CSeq()
	n += int(num) + len(meth)
	mf, _ := m.MaxForwards()
	cl, _ := m.ContentLength()
	n += mf + cl
	n += len(m.ToTag())
	return n
}

// readEverything reads every accessor of the parser once.
func readEverything(m *Message) int {
	n := proxyFields(m)
	n += len(m.RequestURI()) + len(m.Reason()) + len(m.ContentType()) + len(m.Body()) + m.NumHeaders()
	from, _ := m.From()
	n += len(from.Tag) + len(from.URI) + len(from.Display)
	var u URI
	_ = ParseURI(from.URI, &u)
	n += len(u.User) + len(u.Host) + u.Port
	var v Via
	it := m.Vias()
	for it.Next(&v) {
		n += len(v.Received) + len(v.RPort) + len(v.Maddr) + len(v.TTL) + len(v.Transport)
	}
	var a NameAddr
	for _, ai := range []AddrIter{m.Routes(), m.RecordRoutes(), m.Contacts(), m.Paths()} {
		for ai.Next(&a) {
			n += len(a.URI)
			_ = ParseURI(a.URI, &u)
			if _, lr := u.Param("lr"); lr {
				n++
			}
		}
	}
	vi := m.Values(KindAllow)
	for b, ok := vi.Next(); ok; b, ok = vi.Next() {
		n += len(b)
	}
	if h, ok := m.FindName([]byte("User-Agent")); ok {
		n += len(h.Value)
	}
	if h, ok := m.FindName([]byte("Accept")); ok {
		n += len(h.Value)
	}
	var buf [64]byte
	esc, _ := Unescape(buf[:0], u.User)
	return n + len(esc)
}

// TestZeroAllocs is the guard of the hot path: parsing a typical INVITE and
// reading every accessor allocates nothing.
func TestZeroAllocs(t *testing.T) {
	for _, bm := range benchMessages {
		b := load(t, bm.file)
		var m Message
		allocs := testing.AllocsPerRun(200, func() {
			if err := Parse(b, &m); err != nil {
				t.Fatal(err)
			}
			readEverything(&m)
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per parse+read, want 0", bm.name, allocs)
		}
	}
}

func BenchmarkParse(b *testing.B) { benchParse(b, nil) }

func BenchmarkParseProxyFields(b *testing.B) { benchParse(b, proxyFields) }

// benchParse parses each of benchMessages in a sub-benchmark of its own
// and, when read is not nil, reads the parsed message with it (read
// returns a checksum, which must not be 0).
func benchParse(b *testing.B, read func(*Message) int) {
	for _, bm := range benchMessages {
		data := load(b, bm.file)
		b.Run(bm.name, func(b *testing.B) {
			var m Message
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			sum := 0
			for b.Loop() {
				if err := Parse(data, &m); err != nil {
					b.Fatal(err)
				}
				if read != nil {
					sum += read(&m)
				}
			}
			if read != nil && sum == 0 {
				b.Fatal("no fields read")
			}
		})
	}
}

// BenchmarkNameAddr measures what a proxy pays to validate a request's From
// (without its tag) and To (with it).
func BenchmarkNameAddr(b *testing.B) {
	data := load(b, "invite_softphone.sip")
	var m Message
	if err := Parse(data, &m); err != nil {
		b.Fatal(err)
	}
	b.Run("CheckFrom", func(b *testing.B) {
		for b.Loop() {
			if err := m.CheckFrom(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("To", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.To(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
