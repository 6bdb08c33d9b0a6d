// Package udp is Viaduct's batched UDP socket layer: SO_REUSEPORT sockets
// read and written with recvmmsg(2) and sendmmsg(2), shared by the proxy's
// workers (fastpath) and the load generator (bench). It is Linux only.
//
// # Usage
//
// Each worker has its own socket on the shared address and owns one Batch
// for reading and one for writing. ListenGroup opens the sockets, and makes
// sure that no other process has the address (see ListenGroup and
// Config.ShareAddress):
//
//	g, err := udp.ListenGroup(ctx, netip.MustParseAddrPort("127.0.0.1:5060"), workers, udp.Config{RecvBuffer: 8 << 20})
//	c := g[i] // worker i's socket
//	in := c.NewBatch(65535)  // receive slots
//	out := c.NewBatch(0)     // Buf points at the worker's output buffers
//	for {
//		n, err := c.ReadBatch(in)
//		if errors.Is(err, net.ErrClosed) {
//			return
//		}
//		k := 0
//		for _, m := range in.Msgs[:n] {
//			// m.Buf (m.N bytes) came from m.Addr; build the output
//			// in the worker's own buffer and point a message at it.
//			out.Msgs[k].SetData(rewrite(m.Buf), nextHop)
//			k++
//		}
//		c.WriteBatch(out, k) // per-message failures are in out.Msgs[i].Err
//	}
//
// Since ReadBatch leaves every message with its length and source address,
// a batch can be echoed in place with c.WriteBatch(in, n).
//
// A long-running reader uses ReadLoop instead, which calls a handler per
// batch from inside one netpoller read operation:
//
//	err := c.ReadLoop(in, func(n int) bool {
//		// the body of the loop above, for in.Msgs[:n]
//		return true // false ends ReadLoop with a nil error
//	})
//
// It saves a system call per wake-up: a ReadBatch loop calls recvmmsg once
// more after every batch only to hear EAGAIN before it parks, while
// ReadLoop parks straight after a batch that was not full (recvmmsg only
// stops short of the batch size when the queue is empty, and a datagram
// arriving after that is an edge the netpoller keeps for the wait). At a
// few datagrams per wake-up, a proxy's usual life, that is one system call
// in three.
//
// ReadBatch, ReadLoop and WriteBatch allocate nothing: the mmsghdr, iovec, sockaddr
// and control-message storage belong to the Batch, the callbacks handed
// to syscall.RawConn are bound once per Batch, and addresses are converted
// between sockaddr and netip.AddrPort in place. A goroutine with nothing
// to read is parked in the Go netpoller (the callbacks return false on
// EAGAIN), so idle workers cost no thread and no CPU; Close wakes a
// blocked ReadBatch or ReadLoop with an error wrapping net.ErrClosed.
//
// # Waiting in the kernel: Config.ParkAfter
//
// A netpoller wake-up is expensive where system calls are: the scheduler
// polls epoll once without blocking, then blocks in epoll_wait, and only
// then does the goroutine's recvmmsg run, three system calls plus the
// scheduler's own work per wake-up. With Config.ParkAfter, a ReadLoop
// whose socket ran empty instead waits for the next datagram inside a
// blocking recvmmsg (MSG_WAITFORONE, bounded by SO_RCVTIMEO): one system
// call, and the goroutine never leaves its thread. Only after ParkAfter
// without a datagram does it park in the netpoller as before, so an idle
// loop still holds no thread. Under a steady SIPp stream through the proxy
// (2,000 calls/s) on a core of its own this saves about a sixth of its
// CPU per forwarded message; on two cores shared with a busy load
// generator it cost about 8% more instead. The README's performance table
// has the figures and commands.
//
// The wait is a raw system call, so the loop keeps its P (its share of
// GOMAXPROCS) while it waits; with entersyscall the runtime's sysmon
// would hand the P away after 20 µs and wake another thread for it on
// every datagram, which costs more than it saves. A waiting loop yields
// with runtime.Gosched every 32 waits and whenever a signal interrupts the
// wait (the runtime's preemption requests and stop-the-world for GC are
// signals), so other goroutines on its P run within a fraction of a
// millisecond under load, and a goroutine dump or a GC never waits for
// it. Goroutines waiting for the network are another matter: only a pass
// through the netpoller finds them, and neither Gosched nor the runtime's
// sysmon makes one while the loop keeps its P (under a steady stream an
// admin API's listener went unanswered for as long as the stream lasted),
// so the loop also parks in the netpoller once every 5 ms. Loops that each have a P of their own (at most GOMAXPROCS of them)
// are what it is for: the fastpath engine only sets it in that case.
//
// # Kernel drops
//
// Listen enables SO_RXQ_OVFL, so every received datagram carries the
// socket's cumulative drop counter; ReadBatch keeps the latest value, and
// Conn.Drops also reads the live value with getsockopt(SO_MEMINFO). A
// growing Drops means the receive buffer overflowed: raise
// Config.RecvBuffer or add workers.
//
// # Performance
//
// BenchmarkEchoBatch and BenchmarkEchoPlain echo 512-byte datagrams over
// loopback with 64 in flight, batched on both ends versus one
// ReadFromUDPAddrPort/WriteToUDPAddrPort per datagram, and report
// datagrams per second and process CPU time per echoed datagram (both
// ends, kernel loopback work included). On a 2-core VM batching cost
// about 3.2 µs of CPU per echoed datagram against 13.5 µs, and on an
// otherwise idle machine moved about 300k datagrams/s against 85k, with
// 0 allocations either way.
//
// # SO_REUSEPORT spreads by 4-tuple
//
// With ReusePort, the kernel picks the socket of the group for each
// incoming datagram by a hash of (source address, source port,
// destination address, destination port). Nothing else counts, not the
// load of the sockets nor the CPU: every datagram of one source lands on
// the same socket, hence on one worker, however busy that source is.
// TestReusePortSpreading (go test -run Spreading -v) measures it with 4
// sockets in the group; a typical run:
//
//	 1 source  x 256 datagrams: per socket [0 0 256 0]     1 of 4 sockets busy
//	 4 sources x  64 datagrams: per socket [128 0 0 128]   2 of 4 busy (sources 2 0 0 2)
//	64 sources x   4 datagrams: per socket [76 64 60 56]   4 of 4 busy (sources 19 16 15 14)
//
// Over eight runs the single source always hit exactly one socket, 4
// sources kept 2 or 3 of the 4 sockets busy (all four only with
// probability 4!/4^4, about 9%), and 64 sources reached all four with
// 13 to 22 sources each.
//
// For a SIP proxy this means a single heavy peer (one SIPp instance, one
// upstream proxy or SBC sending everything from one port) is capped at
// the throughput of one worker, and a handful of peers load the workers
// unevenly; only many peers (phones, a fleet of clients) spread well.
// Spreading one source over several workers has to happen above this
// package or in a reuse-port BPF program attached through
// Conn.SyscallConn, and must then itself keep the messages of one flow in
// order. The upside of the hash is that ordering per source comes for
// free: one source, one socket, one reader, arrival order.
package udp
