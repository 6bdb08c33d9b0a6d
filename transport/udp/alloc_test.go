//go:build linux && !portableudp

package udp

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestWriteBatchAllocs proves WriteBatch allocates nothing, including
// when some messages are refused and carry an Err.
func TestWriteBatchAllocs(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			c := listenOrSkip(t, addr, Config{RecvBuffer: 4 << 20})
			sink := listen(t, addr, Config{RecvBuffer: 4 << 20})
			out := NewBatch(16, 0)
			payload := make([]byte, 200)
			for i := range out.Msgs {
				out.Msgs[i].SetData(payload, sink.LocalAddr())
			}
			out.Msgs[5].Addr = netip.AddrPortFrom(sink.LocalAddr().Addr(), 0) // EINVAL, skipped
			allocs := testing.AllocsPerRun(100, func() {
				if sent, err := c.WriteBatch(out, 16); sent != 15 || err != nil {
					panic(fmt.Sprintf("WriteBatch = %d, %v", sent, err))
				}
			})
			if allocs != 0 {
				t.Errorf("WriteBatch: %v allocs per batch, want 0", allocs)
			}
		})
	}
}

// TestReadBatchAllocs proves a write+read round trip of a batch
// allocates nothing; with TestWriteBatchAllocs this pins ReadBatch at 0,
// including address conversion and SO_RXQ_OVFL parsing.
func TestReadBatchAllocs(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			c := listenOrSkip(t, addr, Config{RecvBuffer: 4 << 20})
			src := listen(t, addr, Config{})
			out := NewBatch(16, 0)
			for i := range out.Msgs {
				out.Msgs[i].SetData([]byte(fmt.Sprintf("datagram %d", i)), c.LocalAddr())
			}
			in := NewBatch(16, 2048)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := src.WriteBatch(out, 16); err != nil {
					panic(err)
				}
				for got := 0; got < 16; {
					n, err := c.ReadBatch(in)
					if err != nil {
						panic(err)
					}
					if in.Msgs[0].Addr != src.LocalAddr() {
						panic(fmt.Sprintf("source %v, want %v", in.Msgs[0].Addr, src.LocalAddr()))
					}
					got += n
				}
			})
			if allocs != 0 {
				t.Errorf("WriteBatch+ReadBatch: %v allocs per batch, want 0", allocs)
			}
			if !c.rxqOvfl {
				t.Error("SO_RXQ_OVFL off: the control-message path was not measured")
			}
		})
	}
}

// TestWriteToAllocs checks the single-datagram convenience path too.
func TestWriteToAllocs(t *testing.T) {
	c := listenOrSkip(t, "127.0.0.1:0", Config{RecvBuffer: 4 << 20})
	sink := listen(t, "127.0.0.1:0", Config{RecvBuffer: 4 << 20})
	payload := []byte("probe")
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.WriteTo(payload, sink.LocalAddr()); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("WriteTo: %v allocs per datagram, want 0", allocs)
	}
}
