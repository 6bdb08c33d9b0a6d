package capture

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// hexBytes builds a byte slice from parts: strings as their bytes, byte
// slices as they are.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestEncodeIPv4HandChecked(t *testing.T) {
	f := Frame{
		Src: netip.MustParseAddrPort("10.0.0.1:5070"), Dst: netip.MustParseAddrPort("10.0.0.2:5060"),
		Proto: ProtoUDP, Sec: 0x5f5e1000, Usec: 123456, AgentID: 2001,
		AuthKey: []byte("pw"), Payload: []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), CallID: []byte("c1"),
	}
	want := cat(
		[]byte("HEP3"), []byte{0x00, 0x8c}, // total 140
		[]byte{0, 0, 0, 1, 0, 7, 2},                        // family AF_INET
		[]byte{0, 0, 0, 2, 0, 7, 17},                       // protocol UDP
		[]byte{0, 0, 0, 3, 0, 10, 10, 0, 0, 1},             // source IPv4
		[]byte{0, 0, 0, 4, 0, 10, 10, 0, 0, 2},             // destination IPv4
		[]byte{0, 0, 0, 7, 0, 8, 0x13, 0xce},               // source port 5070
		[]byte{0, 0, 0, 8, 0, 8, 0x13, 0xc4},               // destination port 5060
		[]byte{0, 0, 0, 9, 0, 10, 0x5f, 0x5e, 0x10, 0x00},  // seconds
		[]byte{0, 0, 0, 10, 0, 10, 0x00, 0x01, 0xe2, 0x40}, // microseconds 123456
		[]byte{0, 0, 0, 11, 0, 7, 1},                       // protocol type SIP
		[]byte{0, 0, 0, 12, 0, 10, 0, 0, 0x07, 0xd1},       // agent 2001
		[]byte{0, 0, 0, 14, 0, 8}, []byte("pw"),            // auth key
		[]byte{0, 0, 0, 15, 0, 31}, []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), // payload (25 bytes)
		[]byte{0, 0, 0, 17, 0, 8}, []byte("c1"), // correlation ID
	)
	if len(want) != 0x8c {
		t.Fatalf("hand-made frame is %d bytes, header says 140", len(want))
	}
	if f.Size() != len(want) {
		t.Fatalf("Size %d, want %d", f.Size(), len(want))
	}
	got := make([]byte, f.Size())
	if n := f.Encode(got); n != len(want) || !bytes.Equal(got, want) {
		t.Fatalf("Encode (%d bytes)\n got % x\nwant % x", n, got, want)
	}
	var d Frame
	n, err := Decode(append(got, "HEP3 next frame"...), &d)
	if err != nil || n != len(want) {
		t.Fatalf("Decode: %d, %v", n, err)
	}
	if d.Src != f.Src || d.Dst != f.Dst || d.Proto != f.Proto || d.Sec != f.Sec || d.Usec != f.Usec || d.AgentID != f.AgentID ||
		string(d.AuthKey) != "pw" || !bytes.Equal(d.Payload, f.Payload) || string(d.CallID) != "c1" {
		t.Errorf("Decode = %+v", d)
	}
}

func TestEncodeIPv6HandChecked(t *testing.T) {
	f := Frame{
		Src: netip.MustParseAddrPort("[2001:db8::1]:5060"), Dst: netip.MustParseAddrPort("10.0.0.2:5061"),
		Proto: ProtoTCP, Sec: 1, Usec: 2, Payload: []byte("x"),
	}
	v6src := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	v6dst := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2} // IPv4-mapped
	want := cat(
		[]byte("HEP3"), []byte{0, 124},
		[]byte{0, 0, 0, 1, 0, 7, 10}, // AF_INET6
		[]byte{0, 0, 0, 2, 0, 7, 6},  // TCP
		[]byte{0, 0, 0, 5, 0, 22}, v6src,
		[]byte{0, 0, 0, 6, 0, 22}, v6dst,
		[]byte{0, 0, 0, 7, 0, 8, 0x13, 0xc4},
		[]byte{0, 0, 0, 8, 0, 8, 0x13, 0xc5},
		[]byte{0, 0, 0, 9, 0, 10, 0, 0, 0, 1},
		[]byte{0, 0, 0, 10, 0, 10, 0, 0, 0, 2},
		[]byte{0, 0, 0, 11, 0, 7, 1},
		[]byte{0, 0, 0, 12, 0, 10, 0, 0, 0, 0},
		[]byte{0, 0, 0, 15, 0, 7, 'x'},
	)
	if len(want) != 124 {
		t.Fatalf("hand-made frame is %d bytes", len(want))
	}
	got := make([]byte, f.Size())
	f.Encode(got)
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode\n got % x\nwant % x", got, want)
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	f := Frame{Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2"), Proto: ProtoUDP, Payload: []byte("p")}
	good := make([]byte, f.Size())
	f.Encode(good)
	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"HEP2":          {mod(func(b []byte) []byte { b[3] = '2'; return b }), ErrNotHEP3},
		"short":         {good[:4], ErrNotHEP3},
		"total too big": {mod(func(b []byte) []byte { b[5]++; return b }), ErrBadLength},
		"chunk overrun": {mod(func(b []byte) []byte { b[11] = 200; return b }), ErrBadChunk},
		"chunk len 0":   {mod(func(b []byte) []byte { b[11] = 0; return b }), ErrBadChunk},
		"family size": {mod(func(b []byte) []byte {
			b[11] = 8
			b = append(b[:13], append([]byte{0}, b[13:]...)...)
			b[5]++
			return b
		}), ErrBadChunk},
		"no payload": {mod(func(b []byte) []byte { b = b[:len(b)-7]; b[5] -= 7; return b }), ErrMissingHEP},
	} {
		var d Frame
		if _, err := Decode(tc.b, &d); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestFrameTime(t *testing.T) {
	for _, src := range []string{"10.0.0.1:5060", "[2001:db8::1]:5060"} {
		f := Frame{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort("10.0.0.2:5060"), Sec: 1764720000, Usec: 987654, Payload: []byte("x"), CallID: []byte("c")}
		b := make([]byte, f.Size())
		f.Encode(b)
		if got, want := frameTime(b), uint64(1764720000)*1e6+987654; got != want {
			t.Errorf("%s: frameTime %d, want %d", src, got, want)
		}
	}
}
