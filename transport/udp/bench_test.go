//go:build linux && !portableudp

package udp

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchPayload is the size of the datagrams the echo benchmarks send, in
// the range of a typical SIP request.
const benchPayload = 512

// benchConfig is the socket configuration of the echo benchmarks' ends.
var benchConfig = Config{RecvBuffer: 4 << 20, SendBuffer: 4 << 20}

// benchWindow is how many datagrams a client has in flight: one batch.
const benchWindow = 64

// BenchmarkEchoBatch measures datagrams echoed per second on loopback
// with ReadBatch/WriteBatch on both ends: the client sends a window of 64
// with one WriteBatch and collects the echoes with ReadBatch; the server
// echoes every batch it reads with one WriteBatch. One op is one datagram
// sent and its echo received.
func BenchmarkEchoBatch(b *testing.B) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		b.Run(netName(addr), func(b *testing.B) {
			srv := listenOrSkip(b, addr, benchConfig)
			cli := listenOrSkip(b, addr, benchConfig)
			go func() {
				in := srv.NewBatch(2048)
				for {
					n, err := srv.ReadBatch(in)
					if err != nil {
						if errors.Is(err, net.ErrClosed) {
							return
						}
						continue
					}
					srv.WriteBatch(in, n) // Addr is the source: echo in place
				}
			}()
			out := NewBatch(benchWindow, benchPayload)
			for i := range out.Msgs {
				out.Msgs[i].N = benchPayload
				out.Msgs[i].Addr = srv.LocalAddr()
			}
			in := NewBatch(benchWindow, 2048)
			measureEcho(b, cli,
				func(w int) error {
					_, err := cli.WriteBatch(out, w)
					return err
				},
				func() (int, error) { return cli.ReadBatch(in) })
		})
	}
}

// BenchmarkEchoPlain is BenchmarkEchoBatch with one datagram per system
// call: net.UDPConn's WriteToUDPAddrPort and ReadFromUDPAddrPort on both
// ends, the same window of 64 in flight.
func BenchmarkEchoPlain(b *testing.B) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		b.Run(netName(addr), func(b *testing.B) {
			srv := listenOrSkip(b, addr, benchConfig).uc
			cli := listenOrSkip(b, addr, benchConfig).uc
			to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := srv.ReadFromUDPAddrPort(buf)
					if err != nil {
						if errors.Is(err, net.ErrClosed) {
							return
						}
						continue
					}
					srv.WriteToUDPAddrPort(buf[:n], from)
				}
			}()
			payload := make([]byte, benchPayload)
			buf := make([]byte, 2048)
			measureEcho(b, cli,
				func(w int) error {
					for i := 0; i < w; i++ {
						if _, err := cli.WriteToUDPAddrPort(payload, to); err != nil {
							return err
						}
					}
					return nil
				},
				func() (int, error) {
					_, _, err := cli.ReadFromUDPAddrPort(buf)
					return 1, err
				})
		})
	}
}

// measureEcho runs the client side of an echo benchmark: b.N datagrams,
// a window at a time, each window sent with send(w) and its echoes
// collected with receive, which reads what has arrived (one or more
// datagrams) and returns how many. Echoes missing a second after their
// window was sent count as lost.
func measureEcho(b *testing.B, cli interface{ SetReadDeadline(time.Time) error }, send func(w int) error, receive func() (int, error)) {
	lost := 0
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for done := 0; done < b.N; {
		w := min(benchWindow, b.N-done)
		if err := send(w); err != nil {
			b.Fatal(err)
		}
		cli.SetReadDeadline(time.Now().Add(time.Second))
		for got := 0; got < w; {
			n, err := receive()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				lost += w - got
				break
			} else if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		done += w
	}
	b.StopTimer()
	reportRates(b, start, cpu0)
	b.ReportMetric(float64(lost), "lost")
}

// cpuTime returns the user+system CPU time of the whole process (client
// and server goroutines alike).
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRates reports datagrams echoed per wall-clock second and the CPU
// time (both ends together) spent per echoed datagram; the latter is
// what batching saves and is less sensitive to other load on the machine.
func reportRates(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "dgrams/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/dgram")
}

func netName(addr string) string {
	if addr[0] == '[' {
		return "ipv6"
	}
	return "ipv4"
}
