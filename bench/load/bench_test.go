package load

import (
	"net/netip"
	"testing"
)

// BenchmarkUACCall measures the UAC's own work for one whole call (build
// INVITE, read 180 and 200, build ACK and BYE, read the BYE's 200), without
// sockets.
func BenchmarkUACCall(b *testing.B) {
	t := &testing.T{}
	ts := newTestSource(t, UACConfig{})
	benchCalls(b, ts, replayableCall(t, ts))
}

// benchCalls runs call b.N times, failing if any of ts's calls failed.
func benchCalls(b *testing.B, ts *testSource, call func()) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call()
	}
	if ts.counter(cFailed) != 0 {
		b.Fatal("calls failed")
	}
}

// BenchmarkUASCall measures the UAS's work for one call's requests
// (INVITE answered with 100, 180, 200; ACK; BYE answered with 200),
// without sockets.
func BenchmarkUASCall(b *testing.B) {
	tu := newTestUAS(&testing.T{}, 1, UASConfig{})
	w := tu.w[0]
	w.sink = func([]byte, netip.AddrPort) {}
	reqs := [][]byte{[]byte(invite), []byte(inDialog("ACK", 7)), []byte(inDialog("BYE", 8))}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range reqs {
			w.handle(r, client)
		}
		w.flush()
	}
}
