package fastpath

import (
	"encoding/binary"
	"testing"
)

// Reference vectors: key 00..0f, message 00..(n-1) (the SipHash paper's
// appendix A and the reference implementation's vectors.h), and the zero key
// over "Hello world".
func TestSipHashVectors(t *testing.T) {
	var key [16]byte
	msg := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	for n, want := range map[int]uint64{
		0: 0x726fdb47dd0e0e31, 1: 0x74f839c593dc67fd, 2: 0x0d6c8009d9a94f5a, 3: 0x85676696d7fb7e2d,
		4: 0xcf2794e0277187b7, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5,
	} {
		if got := sipHash24(k0, k1, msg[:n]); got != want {
			t.Errorf("len %d: %#x, want %#x", n, got, want)
		}
	}
	if got := sipHash24(0, 0, []byte("Hello world")); got != 0xc9e8a3021f3822d9 {
		t.Errorf("Hello world: %#x", got)
	}
	// Streaming in pieces gives the one-shot value.
	for n := 0; n <= 64; n++ {
		want := sipHash24(k0, k1, msg[:n])
		for cut := 0; cut <= n; cut++ {
			var s sipState
			s.init(k0, k1)
			s.write(msg[:cut])
			s.write(msg[cut:n])
			if got := s.sum64(); got != want {
				t.Fatalf("len %d cut %d: %#x, want %#x", n, cut, got, want)
			}
		}
	}
}
