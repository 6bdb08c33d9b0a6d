package edge_test

import (
	"context"
	"net/netip"
	"runtime"
	"testing"

	"github.com/viaduct-sip/viaduct/edge"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// The edge's cost against the core's: BenchmarkCore runs the forwarding
// core (parse, balance, rewrite, MAC) on an INVITE as a transport worker
// calls it; BenchmarkCoreWithEdge runs the same behind the edge stage with
// the default rules (scanner list, limits, bans) and an access table.
// The bound: the second within 10% of the first.

// coreHandler is a fastpath.Worker as a transport drives it.
type coreHandler struct {
	w   *fastpath.Worker
	out fastpath.Output
}

func (h *coreHandler) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	h.out.Buf = out.Buf
	a := h.w.Handle(msg, src, &h.out)
	out.Buf, out.To = h.out.Buf, h.out.Peer()
	return a == fastpath.ActionForward
}

func (h *coreHandler) Sent(*transport.Outbound, error) {}

// costInvite is a phone's INVITE with SDP and User-Agent.
var costInvite = edge.CostInvite()

func newCore(b *testing.B) transport.Handler {
	e, err := fastpath.New(fastpath.Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:5060")},
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:5060"), netip.MustParseAddrPort("192.0.2.11:5060")},
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &coreHandler{w: e.NewWorker()}
}

func runCost(b *testing.B, h transport.Handler) { runCostOf(b, h, costInvite) }

func runCostOf(b *testing.B, h transport.Handler, costInvite []byte) {
	out := transport.Outbound{Buf: make([]byte, 0, 65536)}
	// 64 phones. A benchmark loop sends each thousands of INVITEs a
	// second, so the edge is given limits no loop reaches: every request
	// takes the admitted path, rate check included.
	srcs := make([]transport.Peer, 64)
	for i := range srcs {
		srcs[i] = transport.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 5060), Kind: transport.UDP}
	}
	if !h.Handle(costInvite, srcs[0], &out) {
		b.Fatal("the INVITE was not forwarded")
	}
	// The CPU time of the benchmark's thread as well as the wall time:
	// on a shared machine the wall time counts the other processes too.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := testenv.ThreadCPU(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		out.Buf = out.Buf[:0]
		h.Handle(costInvite, srcs[i&63], &out)
	}
	b.ReportMetric(float64(testenv.ThreadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkCore(b *testing.B) { runCost(b, newCore(b)) }

// The same with a desk phone's INVITE (1,200 bytes).
func BenchmarkCoreDeskPhone(b *testing.B) { runCostOf(b, newCore(b), edge.CostInviteDeskPhone()) }

func BenchmarkCoreWithEdgeDeskPhone(b *testing.B) {
	runCostOf(b, newEdgeStage(b, newCore(b)), edge.CostInviteDeskPhone())
}

func BenchmarkCoreWithEdge(b *testing.B) { runCost(b, newEdgeStage(b, newCore(b))) }

// newEdgeStage puts an edge with an access table and the default rules,
// but limits no benchmark loop reaches, in front of core.
func newEdgeStage(b *testing.B, core transport.Handler) transport.Handler {
	high := edge.Limit{Rate: 1e9, Burst: 1e9}
	p, err := edge.Prepare(edge.Config{
		Access: edge.AccessConfig{Trusted: []string{"10.0.0.0/8"}, Deny: []string{"203.0.113.0/24", "192.0.2.128/25"}},
		Limits: edge.LimitsConfig{Register: high, Invite: high, Other: high, NewSources: high},
	})
	if err != nil {
		b.Fatal(err)
	}
	g := edge.New(p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go g.Run(ctx) // the coarse clock, as in the running binary
	g.SetUpstreams([]edge.Upstream{{Addr: netip.MustParseAddrPort("192.0.2.10:5060")}, {Addr: netip.MustParseAddrPort("192.0.2.11:5060")}})
	return g.Stage(core, transport.Position{Kind: transport.UDP})
}
