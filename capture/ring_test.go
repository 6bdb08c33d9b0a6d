package capture

import (
	"bytes"
	"fmt"
	"testing"
)

func TestRingOrderWrapAndFull(t *testing.T) {
	r := newRing(256)
	put := func(s string, flags uint8) bool {
		b := r.reserve(len(s))
		if b == nil {
			return false
		}
		copy(b, s)
		r.commit(len(s), flags)
		return true
	}
	get := func() (string, uint8, bool) {
		b, f, ok := r.next()
		return string(b), f, ok
	}
	// 100-byte records take 112 bytes: two fit, the third does not.
	a, b, c := bytes.Repeat([]byte("a"), 100), bytes.Repeat([]byte("b"), 100), bytes.Repeat([]byte("c"), 100)
	if !put(string(a), 1) || !put(string(b), 2) {
		t.Fatal("two records do not fit in 256 bytes")
	}
	if put(string(c), 3) {
		t.Fatal("a third record fitted in a full ring")
	}
	if s, f, ok := get(); !ok || s != string(a) || f != 1 {
		t.Fatalf("first record %q %d %v", s, f, ok)
	}
	// Not released yet: still no room.
	if put(string(c), 3) {
		t.Fatal("a record fitted before the consumer released")
	}
	r.release()
	// 32 bytes are left before the end: c wraps behind a padding record.
	if !put(string(c), 3) {
		t.Fatal("no room after release")
	}
	for i, want := range []string{string(b), string(c)} {
		s, f, ok := get()
		if !ok || s != want || f != uint8(2+i) {
			t.Fatalf("record %d: %q %d %v", i, s, f, ok)
		}
	}
	if _, _, ok := get(); ok {
		t.Fatal("a record after the last one")
	}
	r.release()
	if put(string(make([]byte, 256)), 0) {
		t.Fatal("a record larger than the ring fitted")
	}
}

func put(r *ring, s string) bool {
	b := r.reserve(len(s))
	if b == nil {
		return false
	}
	copy(b, s)
	r.commit(len(s), 0)
	return true
}

// One producer and one consumer goroutine: every record arrives whole and
// in order, or was refused (the race detector checks the hand-over).
func TestRingConcurrent(t *testing.T) {
	r := newRing(4096)
	const n = 20000
	done := make(chan []string)
	go func() {
		var got []string
		for len(got) < n {
			b, _, ok := r.next()
			if !ok {
				r.release()
				continue
			}
			got = append(got, string(b))
			if string(b) == "end" {
				break
			}
		}
		r.release()
		done <- got
	}()
	sent := []string{}
	for i := 0; i < n; i++ {
		s := fmt.Sprintf("record %d %s", i, bytes.Repeat([]byte{'x'}, i%300))
		if put(r, s) {
			sent = append(sent, s)
		}
	}
	for !put(r, "end") {
	}
	got := <-done
	if len(got) != len(sent)+1 {
		t.Fatalf("got %d records, sent %d", len(got)-1, len(sent))
	}
	for i := range sent {
		if got[i] != sent[i] {
			t.Fatalf("record %d: %q, want %q", i, got[i], sent[i])
		}
	}
}
