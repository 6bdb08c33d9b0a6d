package balancer

import (
	"fmt"
	"testing"
)

// Benchmarks: go test -run '^$' -bench . -benchmem ./balancer/

func BenchmarkPick(b *testing.B) {
	keys := testKeys(1<<20, 1) // spread over the whole table, as live traffic is
	for _, n := range []int{2, 10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tab := mustPool(b, equalWeights(n), Options{}).Table()
			b.ReportAllocs()
			b.ResetTimer()
			sink := 0
			for i := 0; i < b.N; i++ {
				t, _ := tab.Pick(keys[i&(len(keys)-1)], false)
				sink += t.Weight
			}
			_ = sink
		})
	}
}

// BenchmarkPickWithHash includes hashing a 40-byte Call-ID and loading the
// table from the pool: the whole per-request cost.
func BenchmarkPickWithHash(b *testing.B) {
	p := mustPool(b, equalWeights(1000), Options{})
	callID := []byte("a84b4c76e66710-a84b4c76e66710@10.0.0.1")
	b.ReportAllocs()
	sink := 0
	for i := 0; i < b.N; i++ {
		callID[0] = byte(i)
		t, _ := p.Table().Pick(HashKey(callID), false)
		sink += t.Weight
	}
	_ = sink
}

func BenchmarkPickRR(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tab := mustPool(b, equalWeights(n), Options{Mode: ModeRoundRobin}).Table()
			var cursor uint64
			b.ReportAllocs()
			sink := 0
			for i := 0; i < b.N; i++ {
				t, _ := tab.PickRR(&cursor, false)
				sink += t.Weight
			}
			_ = sink
		})
	}
}

func BenchmarkPolicyFor(b *testing.B) {
	p, err := ParsePolicy(map[string]string{"MESSAGE": "from-uri", "SUBSCRIBE": "to-aor", "INVITE": "call-id"})
	if err != nil {
		b.Fatal(err)
	}
	m := []byte("BYE")
	b.ReportAllocs()
	sink := 0
	for i := 0; i < b.N; i++ {
		sink += int(p.For(m).Kind)
	}
	_ = sink
}

// BenchmarkRebuild measures table builds: full (NewPool, also a reload that
// changes most of the pool), one target going down and coming back up
// (alternating; derived from the previous table), and draining one target
// and re-enabling it.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ts := equalWeights(n)
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				mustPool(b, ts, Options{})
			}
		})
		if n != 1000 {
			continue
		}
		for _, change := range []string{"down-up", "drain-enable"} {
			b.Run(fmt.Sprintf("%s/%d", change, n), func(b *testing.B) {
				p := mustPool(b, ts, Options{})
				id := p.Table().Target(n / 2).ID
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					var err error
					switch {
					case change == "down-up":
						err = p.SetHealth(id, Health(i%2))
					case i%2 == 0:
						err = p.SetAdmin(id, Draining)
					default:
						err = p.SetAdmin(id, Enabled)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("round-robin/1000", func(b *testing.B) {
		ts := equalWeights(1000)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			mustPool(b, ts, Options{Mode: ModeRoundRobin})
		}
	})
}
