package fastpath

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// Two engines share one listen address (reuse_port, as two instances do):
// each one's probes leave from its own origin socket and every reply comes
// back to the engine that sent the probe, whatever the kernel's spreading
// of the shared address would have chosen.
func TestProbeRepliesComeBackToTheirSender(t *testing.T) {
	shared := udp.Bind(udp.ServerConfig{ReusePort: true}, nil)
	first := startEngineConfig(t, Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Workers: 2, Transport: shared})
	second, err := New(Config{Listen: first.ListenAddrs(), Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")},
		Workers: 2, Transport: shared, Secret: first.cfg.Secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })

	var mu sync.Mutex
	got := map[string][]string{}
	const responders = 6
	done := make(chan struct{}, 2*responders)
	for name, e := range map[string]*Engine{"first": first, "second": second} {
		e.SetLocalResponseHandler(func(m *parser.Message, _ netip.AddrPort) {
			mu.Lock()
			got[name] = append(got[name], string(m.CallID()))
			mu.Unlock()
			done <- struct{}{}
		})
	}
	for i := range responders {
		r := newResponder(t)
		for name, e := range map[string]*Engine{"first": first, "second": second} {
			probe := originatedOptions(e, r.addr, fmt.Sprintf("%s-%d", name, i))
			if !strings.Contains(string(probe), ";rport;branch=z9hG4bK") {
				t.Fatalf("the probe's Via asks for no rport:\n%s", probe)
			}
			if err := e.SendTo(probe, r.addr); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every probe's reply", func() bool { return len(done) == 2*responders })
	mu.Lock()
	defer mu.Unlock()
	for name, ids := range got {
		if len(ids) != responders {
			t.Errorf("%s got %d replies, want %d: %v", name, len(ids), responders, ids)
		}
		for _, id := range ids {
			if !strings.HasPrefix(id, name+"-") {
				t.Errorf("%s got the reply to %s", name, id)
			}
		}
	}
}

// originatedOptions is an OPTIONS probe to `to` as health builds one.
func originatedOptions(e *Engine, to netip.AddrPort, callID string) []byte {
	b := []byte("OPTIONS sip:" + to.String() + " SIP/2.0\r\n")
	b = e.AppendVia(b, to, 1)
	return append(b, "Max-Forwards: 70\r\nFrom: <sip:viaduct@localhost>;tag=p\r\nTo: <sip:"+to.String()+
		">\r\nCall-ID: "+callID+"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
}
