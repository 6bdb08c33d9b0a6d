package resolve

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A minimal authoritative DNS server on 127.0.0.1 for the tests: it decodes
// the question of a query (RFC 1035 4.1) and answers A, AAAA and SRV
// (RFC 2782) records from an in-memory zone, NXDOMAIN for names it does not
// know, an empty answer for known names without the type asked, and
// SERVFAIL for everything while failing is set.

const (
	typeA    = 1
	typeAAAA = 28
	typeSRV  = 33
	classIN  = 1
)

type srvRR struct {
	priority, weight, port uint16
	target                 string
}

type dnsServer struct {
	t    *testing.T
	conn *net.UDPConn

	mu   sync.Mutex
	zone map[string][]rr // by lower-case name without trailing dot

	failing atomic.Bool
	queries atomic.Int64
}

type rr struct {
	typ  uint16
	addr netip.Addr
	srv  srvRR
}

// newDNSServer starts a server on an ephemeral loopback port; it stops when
// the test ends.
func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{t: t, conn: c, zone: map[string][]rr{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return s
}

// resolver returns a pure-Go resolver whose every connection goes to the
// test server, whatever /etc/resolv.conf names.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// set replaces the records of name.
func (s *dnsServer) set(name string, rrs ...rr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[strings.ToLower(strings.TrimSuffix(name, "."))] = rrs
}

func a(s string) rr    { return rr{typ: typeA, addr: netip.MustParseAddr(s)} }
func aaaa(s string) rr { return rr{typ: typeAAAA, addr: netip.MustParseAddr(s)} }
func srv(prio, weight, port uint16, target string) rr {
	return rr{typ: typeSRV, srv: srvRR{prio, weight, port, target}}
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		s.queries.Add(1)
		resp, err := s.answer(buf[:n])
		if err != nil {
			s.t.Logf("dns server: bad query: %v", err)
			continue
		}
		s.conn.WriteToUDPAddrPort(resp, from)
	}
}

// answer builds the response to query q.
func (s *dnsServer) answer(q []byte) ([]byte, error) {
	if len(q) < 12 {
		return nil, errors.New("short header")
	}
	if binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil, errors.New("want exactly one question")
	}
	// Question: labels up to the root label, then type and class.
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return nil, errors.New("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, errors.New("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, "."))

	s.mu.Lock()
	rrs, known := s.zone[name]
	s.mu.Unlock()
	var answers []rr
	for _, r := range rrs {
		if r.typ == qtype {
			answers = append(answers, r)
		}
	}
	rcode := uint16(0)
	switch {
	case s.failing.Load():
		rcode, answers = 2, nil // SERVFAIL
	case !known:
		rcode = 3 // NXDOMAIN
	}

	out := make([]byte, 12, 512)
	copy(out, q[:2]) // ID
	// QR, opcode copied, AA, RD copied, RA, rcode.
	flags := uint16(0x8000) | binary.BigEndian.Uint16(q[2:])&0x7900 | 0x0400 | 0x0080 | rcode
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], uint16(len(answers)))
	out = append(out, question...)
	for _, r := range answers {
		out = append(out, 0xC0, 12) // pointer to the question's name
		out = binary.BigEndian.AppendUint16(out, r.typ)
		out = binary.BigEndian.AppendUint16(out, classIN)
		out = binary.BigEndian.AppendUint32(out, 30) // TTL
		var rdata []byte
		switch r.typ {
		case typeA, typeAAAA:
			rdata = r.addr.AsSlice()
		case typeSRV:
			rdata = binary.BigEndian.AppendUint16(rdata, r.srv.priority)
			rdata = binary.BigEndian.AppendUint16(rdata, r.srv.weight)
			rdata = binary.BigEndian.AppendUint16(rdata, r.srv.port)
			rdata = appendName(rdata, r.srv.target)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(rdata)))
		out = append(out, rdata...)
	}
	return out, nil
}

// appendName appends name in uncompressed wire form.
func appendName(b []byte, name string) []byte {
	name = strings.TrimSuffix(name, ".")
	if name != "" {
		for _, l := range strings.Split(name, ".") {
			b = append(b, byte(len(l)))
			b = append(b, l...)
		}
	}
	return append(b, 0)
}
