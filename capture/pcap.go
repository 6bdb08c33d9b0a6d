package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// The pcap file of a trace: the classic libpcap format with link type
// LINKTYPE_RAW (each record an IPv4 or IPv6 packet), which Wireshark,
// tshark and sngrep open. Each message becomes one packet with an IP and
// a UDP or TCP header made up from its addresses; a TCP message gets
// consecutive sequence numbers per direction of its connection.

const (
	pcapMagic     = 0xa1b2c3d4 // microsecond timestamps
	linkTypeRaw   = 101
	pcapSnapLen   = 262144
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	tcpHeaderLen  = 20
)

// WritePcap writes msgs as a pcap file.
func WritePcap(w io.Writer, msgs []TracedMessage) error {
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], pcapMagic)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], pcapSnapLen)
	binary.LittleEndian.PutUint32(hdr[20:], linkTypeRaw)
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("capture: pcap header: %w", err)
	}
	seq := map[[2]netip.AddrPort]uint32{}
	var pkt []byte
	for _, m := range msgs {
		pkt = appendPacket(pkt[:0], &m, seq)
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[0:], uint32(m.Time.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(m.Time.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
		if _, err := w.Write(rec[:]); err != nil {
			return fmt.Errorf("capture: pcap record: %w", err)
		}
		if _, err := w.Write(pkt); err != nil {
			return fmt.Errorf("capture: pcap record: %w", err)
		}
	}
	return nil
}

// appendPacket appends the IP packet of m to b.
func appendPacket(b []byte, m *TracedMessage, seq map[[2]netip.AddrPort]uint32) []byte {
	l4 := udpHeaderLen
	if m.Proto == ProtoTCP {
		l4 = tcpHeaderLen
	}
	src, dst := m.Src.Addr().Unmap(), m.Dst.Addr().Unmap()
	v6 := !src.Is4() || !dst.Is4()
	if v6 {
		b = appendIPv6(b, src, dst, m.Proto, l4+len(m.Payload))
	} else {
		b = appendIPv4(b, src, dst, m.Proto, l4+len(m.Payload))
	}
	if m.Proto == ProtoTCP {
		flow := [2]netip.AddrPort{m.Src, m.Dst}
		s := seq[flow]
		if s == 0 {
			s = 1
		}
		seq[flow] = s + uint32(len(m.Payload))
		b = appendTCP(b, m.Src.Port(), m.Dst.Port(), s)
	} else {
		b = binary.BigEndian.AppendUint16(b, m.Src.Port())
		b = binary.BigEndian.AppendUint16(b, m.Dst.Port())
		b = binary.BigEndian.AppendUint16(b, uint16(udpHeaderLen+len(m.Payload)))
		b = binary.BigEndian.AppendUint16(b, 0) // no checksum
	}
	return append(b, m.Payload...)
}

func appendIPv4(b []byte, src, dst netip.Addr, proto uint8, payload int) []byte {
	start := len(b)
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ipv4HeaderLen+payload))
	b = append(b, 0, 0, 0x40, 0, 64, proto, 0, 0) // id, DF, TTL, protocol, checksum
	s, d := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	binary.BigEndian.PutUint16(b[start+10:], ipChecksum(b[start:start+ipv4HeaderLen]))
	return b
}

func appendIPv6(b []byte, src, dst netip.Addr, proto uint8, payload int) []byte {
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(payload))
	b = append(b, proto, 64)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	return append(b, d[:]...)
}

func appendTCP(b []byte, sport, dport uint16, seq uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, 0)     // ack
	b = append(b, 5<<4, 0x18)                   // header length 20, PSH|ACK
	b = binary.BigEndian.AppendUint16(b, 65535) // window
	return append(b, 0, 0, 0, 0)                // checksum, urgent pointer
}

// ipChecksum is the Internet checksum of an IPv4 header.
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// WriteText writes msgs as text: a line per message with its time,
// direction, transport and addresses, then the message.
func WriteText(w io.Writer, info TraceInfo, msgs []TracedMessage) error {
	var sb strings.Builder
	key := "call_id=" + info.CallID
	if info.User != "" {
		key = "user=" + info.User
	}
	state := "active"
	if !info.Active {
		state = "ended by " + info.Ended
	}
	fmt.Fprintf(&sb, "# trace %s %s: %d messages (max %d), %s\n", info.ID, key, len(msgs), info.Max, state)
	for _, m := range msgs {
		dir, proto := "in ", "UDP"
		if m.Out {
			dir = "out"
		}
		if m.Proto == ProtoTCP {
			proto = "TCP"
		}
		fmt.Fprintf(&sb, "\n%s %s %s %s -> %s (%d bytes)\n", m.Time.UTC().Format(time.RFC3339Nano), dir, proto, m.Src, m.Dst, len(m.Payload))
		sb.Write(m.Payload)
		if len(m.Payload) > 0 && m.Payload[len(m.Payload)-1] != '\n' {
			sb.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
