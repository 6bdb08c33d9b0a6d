// Package resolvetest provides a minimal authoritative DNS server on
// 127.0.0.1 for tests of code that resolves upstreams. It decodes the
// question of a query (RFC 1035 4.1) and answers A, AAAA and SRV (RFC 2782)
// records from an in-memory zone: NXDOMAIN for names it does not know, an
// empty answer for known names without the type asked, and SERVFAIL for
// everything while SetFailing(true) is in effect. Server.Resolver returns a
// pure-Go net.Resolver whose every connection goes to the server, whatever
// /etc/resolv.conf names, so a test never sends a query anywhere else.
package resolvetest

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

// DNS record types and class.
const (
	TypeA    = 1
	TypeAAAA = 28
	TypeSRV  = 33
	classIN  = 1
)

// RR is a resource record of the zone.
type RR struct {
	Type uint16
	// Addr is the address of an A or AAAA record.
	Addr netip.Addr
	// Priority, Weight, Port and Target are the fields of an SRV record.
	Priority, Weight, Port uint16
	Target                 string
}

// A returns an A record for ip.
func A(ip string) RR { return RR{Type: TypeA, Addr: netip.MustParseAddr(ip)} }

// AAAA returns an AAAA record for ip.
func AAAA(ip string) RR { return RR{Type: TypeAAAA, Addr: netip.MustParseAddr(ip)} }

// SRV returns an SRV record.
func SRV(priority, weight, port uint16, target string) RR {
	return RR{Type: TypeSRV, Priority: priority, Weight: weight, Port: port, Target: target}
}

// Server is the DNS server. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	conn *net.UDPConn

	mu   sync.Mutex
	zone map[string][]RR // by lower-case name without trailing dot

	failing atomic.Bool
	queries atomic.Int64
}

// NewServer starts a server on an ephemeral port of 127.0.0.1; it stops
// when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, conn: c, zone: map[string][]RR{}}
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

// Resolver returns a pure-Go resolver whose every connection goes to s.
func (s *Server) Resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// Set replaces the records of name (no records: the name exists, with no
// data).
func (s *Server) Set(name string, rrs ...RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[normalize(name)] = rrs
}

// Delete removes name: queries for it get NXDOMAIN.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone, normalize(name))
}

// Clear removes every name.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.zone)
}

// SetFailing makes the server answer every query with SERVFAIL (true) or
// from its zone again (false).
func (s *Server) SetFailing(f bool) { s.failing.Store(f) }

// Queries returns the number of queries received.
func (s *Server) Queries() int64 { return s.queries.Load() }

func normalize(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (s *Server) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		s.queries.Add(1)
		resp, err := s.answer(buf[:n])
		if err != nil {
			s.t.Logf("resolvetest: bad query: %v", err)
			continue
		}
		s.conn.WriteToUDPAddrPort(resp, from)
	}
}

// answer builds the response to query q.
func (s *Server) answer(q []byte) ([]byte, error) {
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
	var answers []RR
	for _, r := range rrs {
		if r.Type == qtype {
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
	// QR, opcode and RD copied, AA, RA, rcode.
	flags := uint16(0x8000) | binary.BigEndian.Uint16(q[2:])&0x7900 | 0x0400 | 0x0080 | rcode
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], uint16(len(answers)))
	out = append(out, question...)
	for _, r := range answers {
		out = append(out, 0xC0, 12) // pointer to the question's name
		out = binary.BigEndian.AppendUint16(out, r.Type)
		out = binary.BigEndian.AppendUint16(out, classIN)
		out = binary.BigEndian.AppendUint32(out, 30) // TTL
		var rdata []byte
		switch r.Type {
		case TypeA, TypeAAAA:
			rdata = r.Addr.AsSlice()
		case TypeSRV:
			rdata = binary.BigEndian.AppendUint16(rdata, r.Priority)
			rdata = binary.BigEndian.AppendUint16(rdata, r.Weight)
			rdata = binary.BigEndian.AppendUint16(rdata, r.Port)
			rdata = appendName(rdata, r.Target)
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
