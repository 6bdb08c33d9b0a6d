package balancer

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchTargets returns n enabled targets of weight 1 in priority group 0.
func benchTargets(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{
			Addr:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5060),
			Transport: "udp",
			Weight:    1,
		}
	}
	return ts
}

func benchKeys(n int) []uint64 {
	ks := make([]uint64, n)
	for i := range ks {
		ks[i] = HashKeyString(fmt.Sprintf("%08x-call@bench", i))
	}
	return ks
}

func BenchmarkPick(b *testing.B) {
	keys := benchKeys(1 << 16)
	for _, n := range []int{2, 10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p, err := NewPool(benchTargets(n), Options{})
			if err != nil {
				b.Fatal(err)
			}
			tab := p.Table()
			b.ReportAllocs()
			b.ResetTimer()
			var sink int
			for i := 0; i < b.N; i++ {
				t, _ := tab.Pick(keys[i&(len(keys)-1)], false)
				sink += int(t.Weight)
			}
			_ = sink
		})
	}
}

func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{10, 1000} {
		ts := benchTargets(n)
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := NewPool(ts, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("down-up/%d", n), func(b *testing.B) {
			p, err := NewPool(ts, Options{})
			if err != nil {
				b.Fatal(err)
			}
			id := p.Table().Target(n / 2).ID
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h := Down
				if i%2 == 1 {
					h = Up
				}
				if err := p.SetHealth(id, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
