package fastpath

import "testing"

func BenchmarkTxKey3261(b *testing.B) {
	_, w := newTestWorker(b, nil)
	m := mustParse(b, invite3261)
	v := m.TopVia()
	b.Run("oneshot", func(b *testing.B) {
		for b.Loop() {
			w.txKey3261(v)
		}
	})
	b.Run("stream", func(b *testing.B) {
		for b.Loop() {
			w.txKey3261Long(v)
		}
	})
}
