package parser

import (
	"strings"
	"testing"
)

func TestFrameStream(t *testing.T) {
	const head = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n"
	cases := []struct {
		name    string
		in      string
		max     int
		headers int
		length  int
		err     error
	}{
		{"whole", head + "Content-Length: 4\r\n\r\nbody", 100, 81, 85, nil},
		{"two messages", head + "l: 0\r\n\r\n" + head + "l: 0\r\n\r\n", 200, 68, 68, nil},
		{"body incomplete", head + "Content-Length: 4\r\n\r\nbo", 100, 81, 0, nil},
		{"headers incomplete", head + "Content-Length: 4\r\n", 100, 0, 0, nil},
		{"LF only", "OPTIONS sip:x SIP/2.0\nContent-Length: 0\n\n", 100, 41, 41, nil},
		{"compact, odd case", head + "L :  2 \r\n\r\nab", 100, 71, 73, nil},
		{"missing", head + "\r\n", 100, 62, 0, ErrNoContentLength},
		{"twice", head + "l: 1\r\nContent-Length: 1\r\n\r\nx", 100, 87, 0, ErrMultipleContentLength},
		{"conflicting", head + "l: 1\r\nContent-Length: 2\r\n\r\nxy", 100, 87, 0, ErrConflictingContentLength},
		{"negative", head + "Content-Length: -1\r\n\r\n", 100, 82, 0, ErrBadContentLength},
		{"huge", head + "Content-Length: 100000000\r\n\r\n", 65535, 89, 0, ErrFrameTooLarge},
		{"overflow", head + "Content-Length: 99999999999999999999\r\n\r\n", 65535, 100, 0, ErrBadContentLength},
		{"endless headers", head + strings.Repeat("X: y\r\n", 30), 100, 0, 0, ErrHeadersTooLarge},
	}
	for _, c := range cases {
		f, err := FrameStream([]byte(c.in), c.max)
		if err != c.err || f.Headers != c.headers || f.Len != c.length {
			t.Errorf("%s: %+v %v, want headers %d len %d err %v", c.name, f, err, c.headers, c.length, c.err)
		}
	}
}

func TestFrameStreamAllocatesNothing(t *testing.T) {
	b := []byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP a\r\nContent-Length: 4\r\n\r\nbody")
	if n := testing.AllocsPerRun(100, func() { FrameStream(b, 1000) }); n != 0 {
		t.Errorf("FrameStream allocates %v times", n)
	}
}

func FuzzFrameStream(f *testing.F) {
	f.Add([]byte("INVITE sip:b@x SIP/2.0\r\nl: 2\r\n\r\nab"), 100)
	f.Add([]byte("A\n\n"), 3)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		fr, err := FrameStream(b, max)
		if err == nil && fr.Len > 0 && (fr.Len > len(b) || fr.Len > max || fr.Headers > fr.Len) {
			t.Fatalf("frame %+v out of %d bytes, max %d", fr, len(b), max)
		}
	})
}
