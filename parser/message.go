package parser

import (
	"bytes"
	"math/bits"
)

// MaxHeaders is the number of header lines a Message can index. A message
// with more is refused with ErrTooManyHeaders; real SIP traffic has a few
// dozen at most.
const MaxHeaders = 128

// span is a half-open byte range [off, end) of the message buffer.
type span struct{ off, end int32 }

// hdr is the index entry of one header line.
type hdr struct {
	line  span // the whole line, including its line ending and folded lines
	name  span
	value span // trimmed value; may contain folded line breaks
	kind  HeaderKind
}

// Message is an indexed SIP message. Its zero value is ready for Parse, and
// one Message can be reused for any number of datagrams: Parse resets it.
// A Message refers to the buffer it was parsed from and must not be used
// after that buffer is overwritten.
type Message struct {
	buf      []byte
	isReq    bool
	methodID Method
	method   span // request method
	ruri     span // Request-URI
	reason   span // response reason phrase
	status   int

	headersStart int
	headersEnd   int
	body         span

	n     int
	first [numKinds]int16 // 1 + index of the first header of each kind; 0 = none
	last  [numKinds]int16 // 1 + index of the last header of each kind; valid where first is set
	hdrs  [MaxHeaders]hdr

	cseqNum    uint32
	cseqMethod span
	maxFwd     int32
	hasMaxFwd  bool
	contentLen int32
	hasCL      bool

	topVia Via
}

// Reset clears m so that it holds no message. Parse need not be preceded
// by it.
func (m *Message) Reset() {
	m.reset()
	m.topVia = Via{}
}

// reset clears everything Parse relies on being clear. The top Via is left
// alone: Parse overwrites it whenever it succeeds, and its 300 bytes are the
// largest part of the work of a reset.
func (m *Message) reset() {
	m.buf = nil
	m.isReq = false
	m.methodID = MethodOther
	m.method, m.ruri, m.reason, m.body, m.cseqMethod = span{}, span{}, span{}, span{}, span{}
	m.status = 0
	m.headersStart, m.headersEnd = 0, 0
	m.n = 0
	m.first = [numKinds]int16{}
	m.cseqNum = 0
	m.maxFwd, m.hasMaxFwd = 0, false
	m.contentLen, m.hasCL = 0, false
}

func (m *Message) slice(s span) []byte { return m.buf[s.off:s.end] }

// Parse indexes the SIP message in b into m. It returns nil or one of the
// *Error values of this package (see the package documentation for what it
// checks). On error m may hold a partial index and must not be read, except
// that Bytes, IsRequest and Method stay meaningful once the start line has
// been read, so a proxy can decide whether and how to answer.
//
// Leading CR and LF bytes (keep-alives, RFC 3261 7.5) are skipped; a
// datagram holding nothing else is ErrEmpty.
func Parse(b []byte, m *Message) error {
	m.reset()
	m.buf = b
	p := 0
	for p < len(b) && (b[p] == '\r' || b[p] == '\n') {
		p++
	}
	if p == len(b) {
		return ErrEmpty
	}
	var stops lineStops
	stops.start(b, p)
	p, err := m.parseStartLine(b, p, &stops)
	if err != nil {
		return err
	}
	m.headersStart = p
	if p, err = m.parseHeaders(b, p, &stops); err != nil {
		return err
	}
	return m.check(b, p)
}

// parseStartLine reads the request or status line beginning at p, which
// ends at the first stop, and returns the offset of the first header line.
// A NUL in it makes it as malformed as a missing line ending.
func (m *Message) parseStartLine(b []byte, p int, stops *lineStops) (int, error) {
	lf := stops.pop()
	if lf == len(b) || b[lf] == 0 {
		return 0, ErrBadStartLine
	}
	end := lf
	if end > p && b[end-1] == '\r' {
		end--
	}
	line := b[p:end]
	if len(line) >= 4 && string(line[:4]) == "SIP/" {
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
		sp := 7
		if len(line) < 8 || load64(line)|foldSIP != sipSP {
			if sp = bytes.IndexByte(line, ' '); sp < 0 {
				return 0, ErrBadStartLine
			}
			if !isSIP20(line[:sp]) {
				return 0, ErrBadVersion
			}
		}
		rest := line[sp+1:]
		if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
			return 0, ErrBadStatus
		}
		code, ok := parseUint(rest[:3], 999)
		if !ok || code < 100 {
			return 0, ErrBadStatus
		}
		m.status = int(code)
		reasonOff := p + sp + 1 + 3
		if reasonOff < end {
			reasonOff++
		}
		m.reason = span{int32(reasonOff), int32(end)}
		return lf + 1, nil
	}
	// Request-Line = Method SP Request-URI SP SIP-Version
	sp1 := scanToken(line, 0)
	if sp1 == 0 || sp1 == len(line) || line[sp1] != ' ' {
		return 0, ErrBadStartLine
	}
	sp2 := len(line) - 8
	if len(line) < 8 || load64(line[sp2:])|foldSPSIP != spSIP {
		// Not " SIP/2.0" at the end: find out what is wrong.
		sp2 = bytes.LastIndexByte(line, ' ')
		version := line[sp2+1:]
		if sp2 > sp1+1 && !isSIP20(version) && len(version) > 4 && equalFold(version[:4], "SIP/") {
			return 0, ErrBadVersion
		}
		return 0, ErrBadStartLine
	}
	if sp2 <= sp1+1 || bytes.IndexByte(line[sp1+1:sp2], ' ') >= 0 {
		return 0, ErrBadStartLine
	}
	m.isReq = true
	m.method = span{int32(p), int32(p + sp1)}
	m.ruri = span{int32(p + sp1 + 1), int32(p + sp2)}
	m.methodID = MethodOf(line[:sp1])
	return lf + 1, nil
}

// isSIP20 reports whether v is the SIP version this parser speaks. "SIP" is
// case-insensitive in the grammar (RFC 3261 25.1).
func isSIP20(v []byte) bool { return equalFold(v, "SIP/2.0") }

// "SIP/2.0 " and " SIP/2.0" as little-endian words, and the masks that
// fold the letters of "SIP" (and nothing else) to lower case, for the start
// line's fast paths.
const (
	sipSP     = 's' | 'i'<<8 | 'p'<<16 | '/'<<24 | '2'<<32 | '.'<<40 | '0'<<48 | ' '<<56
	foldSIP   = 0x0000000000202020
	spSIP     = ' ' | 's'<<8 | 'i'<<16 | 'p'<<24 | '/'<<32 | '2'<<40 | '.'<<48 | '0'<<56
	foldSPSIP = 0x0000000020202000
)

// parseHeaders indexes header lines from p up to and including the blank
// line, and returns the offset of the body. Every line ends at the next
// stop lineStops hands out, which is also how a NUL is found.
func (m *Message) parseHeaders(b []byte, p int, stops *lineStops) (int, error) {
	for {
		if p >= len(b) {
			// No blank line: tolerate a datagram that ends right after
			// its last header line, as some UDP senders do.
			m.headersEnd = len(b)
			return len(b), nil
		}
		if isTokenChar(b[p]) {
			// "Name: value". A known name directly followed by its
			// colon, the usual case, needs no scan: the colon is
			// found eight bytes at a time and kindAt's exact compare
			// vouches for the name. Any other name is scanned.
			var nameEnd, c int
			k := KindOther
			n := colonIn16(b, p)
			if n > 0 {
				k = kindAt(b, p, n)
			}
			if k != KindOther {
				nameEnd, c = p+n, p+n
			} else {
				nameEnd = scanToken(b, p)
				c = nameEnd
				for c < len(b) && (b[c] == ' ' || b[c] == '\t') {
					c++
				}
				if c == len(b) || b[c] != ':' {
					return 0, ErrBadHeader
				}
				if nameEnd-p != n {
					k = kindAt(b, p, nameEnd-p)
				}
			}
			if m.n == MaxHeaders {
				return 0, ErrTooManyHeaders
			}
			// The name, the white space and the colon hold no LF or
			// NUL, so the next stop ends this line. (stops.pop, with
			// its common cases written out: the call costs more than
			// the work.)
			if stops.cur == 0 {
				stops.nextWord()
			}
			var lf int
			if stops.cur != 0 {
				lf = stops.at + bits.TrailingZeros64(stops.cur)
				stops.cur &= stops.cur - 1
			} else {
				lf = stops.pop()
			}
			if lf < len(b) && b[lf] == 0 {
				if lf = skipQuotedNULs(b, p, lf, stops); lf < 0 {
					return 0, ErrNULInHeader
				}
			}
			end := lf
			if end > c+1 && b[end-1] == '\r' {
				end--
			}
			next := min(lf+1, len(b))
			v := c + 1
			for v < end && (b[v] == ' ' || b[v] == '\t') {
				v++
			}
			ve := end
			for ve > v && (b[ve-1] == ' ' || b[ve-1] == '\t') {
				ve--
			}
			m.hdrs[m.n] = hdr{
				line:  span{int32(p), int32(next)},
				name:  span{int32(p), int32(nameEnd)},
				value: span{int32(v), int32(ve)},
				kind:  k,
			}
			m.n++
			m.last[k] = int16(m.n)
			if m.first[k] == 0 {
				m.first[k] = int16(m.n)
			}
			p = next
			continue
		}
		lf := stops.pop()
		if lf < len(b) && b[lf] == 0 {
			if m.n == 0 || (b[p] != ' ' && b[p] != '\t') {
				return 0, ErrNULInHeader
			}
			if lf = skipQuotedNULs(b, int(m.hdrs[m.n-1].line.off), lf, stops); lf < 0 {
				return 0, ErrNULInHeader
			}
		}
		end := lf
		if end > p && b[end-1] == '\r' {
			end--
		}
		if end == p {
			m.headersEnd = p
			return min(lf+1, len(b)), nil
		}
		if (b[p] != ' ' && b[p] != '\t') || m.n == 0 {
			return 0, ErrBadHeader
		}
		// Folded continuation of the previous header line.
		next := min(lf+1, len(b))
		h := &m.hdrs[m.n-1]
		h.line.end = int32(next)
		if v := trimWS(b[p:end]); len(v) > 0 {
			vo := m.Offset(v)
			if h.value.off == h.value.end {
				h.value.off = int32(vo)
			}
			h.value.end = int32(vo + len(v))
		}
		p = next
	}
}

// skipQuotedNULs is called when the stop ending a header line is a NUL at
// nul. A NUL is valid only as the second byte of a quoted-pair inside a
// quoted string (RFC 3261 25.1: quoted-pair = "\\" (%x00-09 / %x0B-0C /
// %x0E-7F)); such NULs are skipped and the offset of the LF (or the end of
// b) that really ends the line is returned; -1 when another NUL stands
// in the line (ErrNULInHeader). lineStart is where the header's first
// line begins.
func skipQuotedNULs(b []byte, lineStart, nul int, stops *lineStops) int {
	for nul < len(b) && b[nul] == 0 {
		if !escapedInQuotes(b, lineStart, nul) {
			return -1
		}
		nul = stops.pop()
	}
	return nul
}

// escapedInQuotes reports whether b[at] is the escaped byte of a
// quoted-pair inside a quoted string that opens at or after lineStart.
func escapedInQuotes(b []byte, lineStart, at int) bool {
	quoted := false
	for i := lineStart; i < at; i++ {
		switch {
		case !quoted:
			quoted = b[i] == '"'
		case b[i] == '"':
			quoted = false
		case b[i] == '\\':
			if i+1 == at {
				return true
			}
			i++
		}
	}
	return false
}

// check validates the headers every message must carry and locates the
// body, which starts at p.
func (m *Message) check(b []byte, p int) error {
	switch {
	case m.first[KindVia] == 0:
		return ErrMissingVia
	case m.first[KindFrom] == 0:
		return ErrMissingFrom
	case m.first[KindTo] == 0:
		return ErrMissingTo
	case m.first[KindCallID] == 0:
		return ErrMissingCallID
	case m.first[KindCSeq] == 0:
		return ErrMissingCSeq
	}
	if err := m.checkSingletons(); err != nil {
		return err
	}
	if err := checkCallID(m.CallID()); err != nil {
		return err
	}
	// CSeq = 1*DIGIT LWS Method
	cs := m.slice(m.hdrs[m.first[KindCSeq]-1].value)
	var num uint64
	i := 0
	for ; i < len(cs) && i < 19; i++ { // 19 digits cannot overflow
		d := cs[i] - '0'
		if d > 9 {
			break
		}
		num = num*10 + uint64(d)
	}
	// RFC 3261 8.1.1.5: less than 2**31
	if i == 0 || num >= 1<<31 || i == len(cs) || !isWS(cs[i]) {
		return ErrBadCSeq
	}
	j := skipWS(cs, i)
	k := scanToken(cs, j)
	if k == j || k != len(cs) {
		if r := skipWS(cs, k); k > j && r < len(cs) && cs[r] == ',' {
			return ErrMultipleCSeq
		}
		return ErrBadCSeq
	}
	off := m.Offset(cs)
	m.cseqNum = uint32(num)
	m.cseqMethod = span{int32(off + j), int32(off + k)}
	if m.isReq && !bytes.Equal(cs[j:k], m.slice(m.method)) {
		return ErrCSeqMethodMismatch
	}

	if h := m.first[KindMaxForwards]; h != 0 {
		v := m.slice(m.hdrs[h-1].value)
		n, ok := parseUint(v, 1<<31-1)
		if !ok {
			if bytes.IndexByte(v, ',') >= 0 {
				return ErrMultipleMaxForwards
			}
			return ErrBadMaxForwards
		}
		m.maxFwd, m.hasMaxFwd = int32(n), true
	}

	rest := len(b) - p
	if h := m.first[KindContentLength]; h != 0 {
		v := m.slice(m.hdrs[h-1].value)
		n, ok := parseUint(v, 1<<31-1)
		if !ok {
			return contentLengthListError(v)
		}
		if int(n) > rest {
			return ErrTruncatedBody
		}
		m.contentLen, m.hasCL = int32(n), true
		m.body = span{int32(p), int32(p + int(n))}
	} else {
		m.body = span{int32(p), int32(len(b))}
	}

	h := &m.hdrs[m.first[KindVia]-1]
	if _, err := parseVia(b, int(h.value.off), int(h.value.end), &m.topVia); err != nil {
		return err
	}
	m.topVia.Header = int(m.first[KindVia] - 1)
	m.topVia.First = true
	return nil
}

// checkSingletons refuses a message that carries one of the headers RFC 3261
// allows once (20.8 Call-ID, 20.20 From, 20.39 To, 20.16 CSeq, 20.22
// Max-Forwards, 20.14 Content-Length) on more than one line. Two
// Content-Length lines are a framing error even when they agree; when they
// disagree the error says so. (Several values on one line are found where
// each value is read.)
func (m *Message) checkSingletons() error {
	switch {
	case m.first[KindCallID] != m.last[KindCallID]:
		return ErrMultipleCallID
	case m.first[KindFrom] != m.last[KindFrom]:
		return ErrMultipleFrom
	case m.first[KindTo] != m.last[KindTo]:
		return ErrMultipleTo
	case m.first[KindCSeq] != m.last[KindCSeq]:
		return ErrMultipleCSeq
	case m.first[KindMaxForwards] != 0 && m.first[KindMaxForwards] != m.last[KindMaxForwards]:
		return ErrMultipleMaxForwards
	case m.first[KindContentLength] != 0 && m.first[KindContentLength] != m.last[KindContentLength]:
		return m.contentLengthLinesError()
	}
	return nil
}

// contentLengthLinesError tells apart Content-Length lines that disagree
// from ones that repeat the same number.
func (m *Message) contentLengthLinesError() error {
	want := int64(-1)
	for i := int(m.first[KindContentLength]) - 1; i < m.n; i++ {
		if m.hdrs[i].kind != KindContentLength {
			continue
		}
		n, ok := parseUint(m.slice(m.hdrs[i].value), 1<<31-1)
		if !ok || (want >= 0 && int64(n) != want) {
			return ErrConflictingContentLength
		}
		want = int64(n)
	}
	return ErrMultipleContentLength
}

// contentLengthListError names the fault of a Content-Length value that is
// not one number: a comma-separated list is Multiple (the same number) or
// Conflicting (different ones), anything else Malformed.
func contentLengthListError(v []byte) error {
	if bytes.IndexByte(v, ',') < 0 {
		return ErrBadContentLength
	}
	want := int64(-1)
	for len(v) > 0 {
		end := bytes.IndexByte(v, ',')
		if end < 0 {
			end = len(v)
		}
		n, ok := parseUint(trimWS(v[:end]), 1<<31-1)
		if !ok {
			return ErrBadContentLength
		}
		if want >= 0 && int64(n) != want {
			return ErrConflictingContentLength
		}
		want = int64(n)
		v = v[min(end+1, len(v)):]
	}
	return ErrMultipleContentLength
}

// checkCallID refuses an empty Call-ID, one holding white space or control
// characters, and a comma-separated list (callid = word ["@" word] has no
// comma).
func checkCallID(v []byte) error {
	switch {
	case len(v) == 0:
		return ErrBadCallID
	case !hasSpaceCtlOr(v, ','):
		return nil
	case bytes.IndexByte(v, ',') >= 0:
		return ErrMultipleCallID
	}
	return ErrBadCallID
}

// Bytes returns the buffer m was parsed from.
func (m *Message) Bytes() []byte { return m.buf }

// Offset returns the position in Bytes of sub, which must be a slice
// returned by one of m's accessors (or re-sliced from one, without a
// capacity limit). It is how a rewriting proxy turns a field into an edit
// position.
func (m *Message) Offset(sub []byte) int { return cap(m.buf) - cap(sub) }

// IsRequest reports whether the message is a request (false: a response).
func (m *Message) IsRequest() bool { return m.isReq }

// Method returns the request method, or nil for a response.
func (m *Message) Method() []byte {
	if !m.isReq {
		return nil
	}
	return m.slice(m.method)
}

// MethodID returns the request method as a Method, MethodOther for a
// response or an extension method.
func (m *Message) MethodID() Method { return m.methodID }

// RequestURI returns the Request-URI of a request, or nil for a response.
func (m *Message) RequestURI() []byte {
	if !m.isReq {
		return nil
	}
	return m.slice(m.ruri)
}

// ParseRequestURI parses the Request-URI into u and checks what RFC 3261
// requires of it beyond any URI (19.1.1, 25.1): it is not enclosed in angle
// brackets, holds no white space and, for sip and sips, carries no headers
// ("?name=value"). The errors name the fault.
func (m *Message) ParseRequestURI(u *URI) error {
	r := m.RequestURI()
	if len(r) > 0 && r[0] == '<' {
		*u = URI{}
		return ErrRequestURIAngle
	}
	switch err := ParseURI(r, u); {
	case err == ErrURIWhiteSpace:
		return ErrRequestURIWhiteSpace
	case err != nil:
		return err
	case u.Headers != nil:
		return ErrRequestURIHeaders
	}
	return nil
}

// StatusCode returns the status code of a response, or 0 for a request.
func (m *Message) StatusCode() int { return m.status }

// Reason returns the reason phrase of a response.
func (m *Message) Reason() []byte { return m.slice(m.reason) }

// HeadersStart returns the offset of the first header line, just after the
// start line's line ending.
func (m *Message) HeadersStart() int { return m.headersStart }

// HeadersEnd returns the offset of the blank line that ends the headers
// (where its CR LF starts), or the end of the buffer if there was none.
func (m *Message) HeadersEnd() int { return m.headersEnd }

// Body returns the message body: Content-Length bytes after the blank line,
// or the rest of the datagram if the message had no Content-Length.
func (m *Message) Body() []byte { return m.slice(m.body) }

// Header is one header line as found by the parser.
type Header struct {
	Kind  HeaderKind
	Name  []byte // the name as written (may be a compact form)
	Value []byte // the value without surrounding white space; folded lines stay in it
	Start int    // offset of the line's first byte
	End   int    // offset just after the line's line ending (and any folded lines)
}

// NumHeaders returns the number of header lines.
func (m *Message) NumHeaders() int { return m.n }

// Header returns header line i, 0 <= i < NumHeaders(), in message order.
func (m *Message) Header(i int) Header {
	h := &m.hdrs[i]
	return Header{
		Kind:  h.kind,
		Name:  m.slice(h.name),
		Value: m.slice(h.value),
		Start: int(h.line.off),
		End:   int(h.line.end),
	}
}

// Find returns the first header line of kind k. Use it for single-valued
// headers; list headers are read with Values or the typed iterators.
func (m *Message) Find(k HeaderKind) (Header, bool) {
	if k == KindOther || k >= numKinds || m.first[k] == 0 {
		return Header{}, false
	}
	return m.Header(int(m.first[k] - 1)), true
}

// Span returns the part of the message from the start of the first header
// line of kind k to the end of the last one, and false when there is none:
// where to look for something only those lines can hold.
func (m *Message) Span(k HeaderKind) (start, end int, ok bool) {
	if k == KindOther || k >= numKinds || m.first[k] == 0 {
		return 0, 0, false
	}
	return int(m.hdrs[m.first[k]-1].line.off), int(m.hdrs[m.last[k]-1].line.end), true
}

// FindName returns the first header line whose name matches name, case
// insensitively and counting compact forms as their long names.
func (m *Message) FindName(name []byte) (Header, bool) {
	if k := kindOf(name); k != KindOther {
		return m.Find(k)
	}
	for i := 0; i < m.n; i++ {
		h := &m.hdrs[i]
		if h.kind == KindOther && equalFold(m.slice(h.name), string(name)) {
			return m.Header(i), true
		}
	}
	return Header{}, false
}

// firstValue returns the value of the first header of kind k.
func (m *Message) firstValue(k HeaderKind) []byte {
	if m.first[k] == 0 {
		return nil
	}
	return m.slice(m.hdrs[m.first[k]-1].value)
}

// CallID returns the Call-ID value.
func (m *Message) CallID() []byte { return m.firstValue(KindCallID) }

// CSeq returns the CSeq sequence number and method.
func (m *Message) CSeq() (num uint32, method []byte) {
	return m.cseqNum, m.slice(m.cseqMethod)
}

// MaxForwards returns the Max-Forwards value and whether the header is
// present (it is optional in RFC 2543).
func (m *Message) MaxForwards() (n int, present bool) { return int(m.maxFwd), m.hasMaxFwd }

// ContentLength returns the Content-Length value and whether the header is
// present.
func (m *Message) ContentLength() (n int, present bool) { return int(m.contentLen), m.hasCL }

// ContentType returns the Content-Type value, or nil.
func (m *Message) ContentType() []byte { return m.firstValue(KindContentType) }

// From parses the From header.
func (m *Message) From() (NameAddr, error) { return m.nameAddr(KindFrom) }

// CheckFrom validates the From header as From does, without looking for
// its tag: for a proxy that must refuse a malformed From but reads nothing
// of it.
func (m *Message) CheckFrom() error {
	var a NameAddr
	if err := parseNameAddr(m.firstValue(KindFrom), &a, false); err != nil {
		return nameAddrError(KindFrom, err)
	}
	return nil
}

// To parses the To header.
func (m *Message) To() (NameAddr, error) { return m.nameAddr(KindTo) }

func (m *Message) nameAddr(k HeaderKind) (NameAddr, error) {
	var a NameAddr
	err := ParseNameAddr(m.firstValue(k), &a)
	if err != nil {
		err = nameAddrError(k, err)
	}
	return a, err
}

// nameAddrError names the header in the faults a From or To value can
// have and a Contact or Route value cannot share.
func nameAddrError(k HeaderKind, err error) error {
	from := k == KindFrom
	switch {
	case err == ErrAddrList && from:
		return ErrMultipleFrom
	case err == ErrAddrList:
		return ErrMultipleTo
	case err == ErrBadDisplayName && from:
		return ErrBadFromDisplayName
	case err == ErrBadDisplayName:
		return ErrBadToDisplayName
	case err == ErrURIWhiteSpace && from:
		return ErrFromURIWhiteSpace
	case err == ErrURIWhiteSpace:
		return ErrToURIWhiteSpace
	}
	return err
}

// TopVia returns the first via-parm of the first Via header, which Parse
// has already validated. The Via belongs to m, like the slices it holds: it
// changes with the next Parse and must not be modified. (It is a pointer
// because a Via is some 300 bytes and a proxy reads it for every message.)
func (m *Message) TopVia() *Via { return &m.topVia }

// Vias returns an iterator over every via-parm, top first, across header
// lines and comma-separated values:
//
//	it := m.Vias()
//	var v parser.Via
//	for it.Next(&v) { ... }
//	if err := it.Err(); err != nil { ... }
func (m *Message) Vias() ViaIter { return ViaIter{m: m, hdr: int(m.first[KindVia]) - 1, pos: -1} }

// Values returns an iterator over the comma-separated values of every
// header line of kind k, in order. It is meant for list headers (Route,
// Supported, Allow, ...); commas inside quotes, angle brackets and comments
// do not split.
func (m *Message) Values(k HeaderKind) ValueIter {
	if k == KindOther || k >= numKinds {
		return ValueIter{m: m, hdr: -1}
	}
	return ValueIter{m: m, kind: k, hdr: int(m.first[k]) - 1, pos: -1}
}

// Routes iterates over the Route header's name-addr values.
func (m *Message) Routes() AddrIter { return AddrIter{v: m.Values(KindRoute)} }

// RecordRoutes iterates over the Record-Route header's name-addr values.
func (m *Message) RecordRoutes() AddrIter { return AddrIter{v: m.Values(KindRecordRoute)} }

// Contacts iterates over the Contact header's values ("*" comes back as a
// NameAddr whose URI is "*").
func (m *Message) Contacts() AddrIter { return AddrIter{v: m.Values(KindContact)} }

// Paths iterates over the Path header's name-addr values (RFC 3327).
func (m *Message) Paths() AddrIter { return AddrIter{v: m.Values(KindPath)} }

// ValueIter iterates over the comma-separated values of one header kind.
// Its zero value yields nothing.
type ValueIter struct {
	m    *Message
	kind HeaderKind
	hdr  int // current header index, -1 when done
	pos  int // next position inside the current header value, -1 = start of header
	err  error
}

// Next returns the next value (trimmed of white space) and true, or nil and
// false when there are no more values or an error stopped the iteration.
func (it *ValueIter) Next() ([]byte, bool) {
	for it.hdr >= 0 && it.err == nil {
		h := &it.m.hdrs[it.hdr]
		if it.pos < 0 {
			it.pos = int(h.value.off)
		}
		val := it.m.buf[:h.value.end]
		if it.pos >= len(val) {
			it.advance()
			continue
		}
		end, rest, err := nextValue(val, it.pos)
		if err != nil {
			it.err = err
			return nil, false
		}
		v := trimWS(val[it.pos:end])
		if rest < 0 {
			it.advance()
		} else {
			it.pos = rest
		}
		if len(v) == 0 {
			continue // empty list element
		}
		return v, true
	}
	return nil, false
}

// advance moves to the next header line of the same kind.
func (it *ValueIter) advance() {
	it.pos = -1
	for i := it.hdr + 1; i < it.m.n; i++ {
		if it.m.hdrs[i].kind == it.kind {
			it.hdr = i
			return
		}
	}
	it.hdr = -1
}

// Err returns the error that stopped the iteration, if any.
func (it *ValueIter) Err() error { return it.err }

// AddrIter iterates over the name-addr values of a list header such as
// Route, Record-Route, Contact or Path.
type AddrIter struct {
	v   ValueIter
	err error
}

// Next parses the next value into a and reports whether there was one.
func (it *AddrIter) Next(a *NameAddr) bool {
	if it.err != nil {
		return false
	}
	b, ok := it.v.Next()
	if !ok {
		it.err = it.v.Err()
		return false
	}
	if err := ParseNameAddr(b, a); err != nil {
		it.err = err
		return false
	}
	return true
}

// Err returns the error that stopped the iteration, if any.
func (it *AddrIter) Err() error { return it.err }
