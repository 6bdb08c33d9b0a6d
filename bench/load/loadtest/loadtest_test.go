package loadtest

import (
	"crypto/tls"
	"net/netip"
	"testing"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/transport"
)

func TestCallsWithOverTLS(t *testing.T) {
	s, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Transport: transport.TLS})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := CallsWith(t, load.UACConfig{Target: s.Addr(), Transport: transport.TLS, Connections: load.ConnPerCall,
		TLS: &tls.Config{InsecureSkipVerify: true}}, 20)
	if r.Counts.Completed != 20 || r.Counts.ConnsOpened != 20 {
		t.Fatalf("completed %d of 20 calls on %d connections: %v", r.Counts.Completed, r.Counts.ConnsOpened, r.Counts.FailedBy())
	}
}
