package compare

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/viaduct-sip/viaduct/parser"
)

// messages are the six messages of parser/bench_test.go, read from the same
// files.
var messages = []struct{ name, file string }{
	{"InviteSoftphone", "invite_softphone.sip"},
	{"OK200Invite", "ok200_invite.sip"},
	{"RegisterDigest", "register_digest.sip"},
	{"OptionsKeepalive", "options_keepalive.sip"},
	{"Ringing180", "ringing180.sip"},
	{"InviteCompact", "invite_compact.sip"},
}

func load(tb testing.TB, file string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "parser", "testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// want holds the fields of each message, read off the files by hand, so that
// the test catches the two parsers agreeing on a wrong value.
var want = map[string]Fields{
	"InviteSoftphone": {Method: "INVITE", CallID: "a84b4c76e66710@pc33.atlanta.example.com",
		Branch: "z9hG4bK776asdhds", ViaHost: "pc33.atlanta.example.com", ViaPort: 5060, ViaCount: 2,
		CSeqNum: 314159, CSeqMethod: "INVITE", MaxForwards: 70, HasMaxForwards: true,
		ContentLength: 250, HasContentLen: true},
	"OK200Invite": {Status: 200, CallID: "a84b4c76e66710@pc33.atlanta.example.com",
		Branch: "z9hG4bK4b43c2ff8.1", ViaHost: "server10.biloxi.example.com", ViaCount: 3,
		CSeqNum: 314159, CSeqMethod: "INVITE", ContentLength: 244, HasContentLen: true, ToTag: "a6c85cf"},
	"RegisterDigest": {Method: "REGISTER", CallID: "843817637684230@998sdasdh09",
		Branch: "z9hG4bKnashds7", ViaHost: "bobspc.biloxi.example.com", ViaPort: 5060, ViaCount: 1,
		CSeqNum: 1827, CSeqMethod: "REGISTER", MaxForwards: 70, HasMaxForwards: true, HasContentLen: true},
	"OptionsKeepalive": {Method: "OPTIONS", CallID: "a84b4c76e66710",
		Branch: "z9hG4bKhjhs8ass877", ViaHost: "pc33.atlanta.example.com", ViaCount: 1,
		CSeqNum: 63104, CSeqMethod: "OPTIONS", MaxForwards: 70, HasMaxForwards: true, HasContentLen: true},
	"Ringing180": {Status: 180, CallID: "a84b4c76e66710@pc33.atlanta.example.com",
		Branch: "z9hG4bK4b43c2ff8.1", ViaHost: "server10.biloxi.example.com", ViaCount: 2,
		CSeqNum: 314159, CSeqMethod: "INVITE", HasContentLen: true, ToTag: "a6c85cf"},
	"InviteCompact": {Method: "INVITE", CallID: "a84b4c76e66710@pc33.atlanta.example.com",
		Branch: "z9hG4bKnashds8", ViaHost: "pc33.atlanta.example.com", ViaCount: 1,
		CSeqNum: 314159, CSeqMethod: "INVITE", MaxForwards: 70, HasMaxForwards: true,
		ContentLength: 250, HasContentLen: true},
}

// TestSameFields checks that both parsers extract the same proxy fields from
// every message, and the right ones, so that the benchmarks compare equal
// work.
func TestSameFields(t *testing.T) {
	for _, tm := range messages {
		t.Run(tm.name, func(t *testing.T) {
			data := load(t, tm.file)

			var m parser.Message
			if err := parser.Parse(data, &m); err != nil {
				t.Fatalf("viaduct: %v", err)
			}
			var vf ViaductFields
			if err := ReadViaduct(&m, &vf); err != nil {
				t.Fatalf("viaduct: %v", err)
			}

			msg, err := sip.NewParser().ParseSIP(data)
			if err != nil {
				t.Fatalf("sipgo: %v", err)
			}
			var sf SipgoFields
			if err := ReadSipgo(msg, &sf); err != nil {
				t.Fatalf("sipgo: %v", err)
			}

			got := vf.Common()
			if got != sf {
				t.Errorf("parsers disagree:\nviaduct %+v\nsipgo   %+v", got, sf)
			}
			if got != want[tm.name] {
				t.Errorf("viaduct fields\n got %+v\nwant %+v", got, want[tm.name])
			}
			if sf != want[tm.name] {
				t.Errorf("sipgo fields\n got %+v\nwant %+v", sf, want[tm.name])
			}
			if vf.Sum() != SumSipgo(&sf) {
				t.Errorf("checksums differ: viaduct %d, sipgo %d", vf.Sum(), SumSipgo(&sf))
			}
		})
	}
}

// TestViaductZeroAllocs guards the target of the comparison: parsing plus
// reading the proxy fields allocates nothing on our side.
func TestViaductZeroAllocs(t *testing.T) {
	for _, tm := range messages {
		data := load(t, tm.file)
		var (
			m  parser.Message
			vf ViaductFields
		)
		allocs := testing.AllocsPerRun(100, func() {
			if err := parser.Parse(data, &m); err != nil {
				t.Fatal(err)
			}
			if err := ReadViaduct(&m, &vf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per parse+fields, want 0", tm.name, allocs)
		}
	}
}

// sink keeps benchmark results alive so the compiler cannot drop the work.
var sink int

// BenchmarkParse measures parsing alone. Viaduct only indexes the message
// (header values are parsed lazily); sipgo parses the start line and the
// headers it knows (Via, From, To, Contact, CSeq, Call-ID, ...) eagerly and
// copies the body.
func BenchmarkParse(b *testing.B) {
	benchCompare(b,
		func(m *parser.Message) (int, error) { return m.NumHeaders(), nil },
		func(msg sip.Message) (int, error) { return len(msg.Body()), nil })
}

// BenchmarkProxyFields measures parsing plus reading every field of Fields.
func BenchmarkProxyFields(b *testing.B) {
	var (
		vf ViaductFields
		sf SipgoFields
	)
	benchCompare(b,
		func(m *parser.Message) (int, error) {
			err := ReadViaduct(m, &vf)
			return vf.Sum(), err
		},
		func(msg sip.Message) (int, error) {
			err := ReadSipgo(msg, &sf)
			return SumSipgo(&sf), err
		})
}

// benchCompare runs, for each message, a viaduct and a sipgo
// sub-benchmark: each parses the message and reads it with its parser's
// read function, which returns a checksum.
func benchCompare(b *testing.B, readViaduct func(*parser.Message) (int, error), readSipgo func(sip.Message) (int, error)) {
	for _, tm := range messages {
		data := load(b, tm.file)
		b.Run(tm.name+"/viaduct", func(b *testing.B) {
			var m parser.Message
			benchLoop(b, data, func() (int, error) {
				if err := parser.Parse(data, &m); err != nil {
					return 0, err
				}
				return readViaduct(&m)
			})
		})
		b.Run(tm.name+"/sipgo", func(b *testing.B) {
			p := sip.NewParser()
			benchLoop(b, data, func() (int, error) {
				msg, err := p.ParseSIP(data)
				if err != nil {
					return 0, err
				}
				return readSipgo(msg)
			})
		})
	}
}

// benchLoop measures parseAndRead on data, keeping its checksums in sink.
func benchLoop(b *testing.B, data []byte, parseAndRead func() (int, error)) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		v, err := parseAndRead()
		if err != nil {
			b.Fatal(err)
		}
		n += v
	}
	sink = n
}
