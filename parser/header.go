package parser

// HeaderKind identifies the headers the parser knows by name. Compact forms
// map to the same kind as their long names ("v" and "Via" are both KindVia).
// Any other header is KindOther and can still be found with FindName.
type HeaderKind uint8

// The header kinds. The comment after each gives its long name and, where it
// has one, its compact form.
const (
	KindOther              HeaderKind = iota
	KindVia                           // Via, v
	KindFrom                          // From, f
	KindTo                            // To, t
	KindCallID                        // Call-ID, i
	KindCSeq                          // CSeq
	KindMaxForwards                   // Max-Forwards
	KindContentLength                 // Content-Length, l
	KindContentType                   // Content-Type, c
	KindContentEncoding               // Content-Encoding, e
	KindRoute                         // Route
	KindRecordRoute                   // Record-Route
	KindContact                       // Contact, m
	KindPath                          // Path
	KindSubject                       // Subject, s
	KindSupported                     // Supported, k
	KindEvent                         // Event, o
	KindAllowEvents                   // Allow-Events, u
	KindReferTo                       // Refer-To, r
	KindReferredBy                    // Referred-By, b
	KindSessionExpires                // Session-Expires, x
	KindIdentity                      // Identity, y
	KindAcceptContact                 // Accept-Contact, a
	KindRejectContact                 // Reject-Contact, j
	KindRequestDisposition            // Request-Disposition, d
	KindRequire                       // Require
	KindProxyRequire                  // Proxy-Require
	KindProxyAuthorization            // Proxy-Authorization
	KindAuthorization                 // Authorization
	KindExpires                       // Expires
	KindAllow                         // Allow
	KindUserAgent                     // User-Agent
	numKinds
)

// kindNames holds each kind's canonical long name, indexed by kind.
var kindNames = [numKinds]string{
	KindOther: "", KindVia: "Via", KindFrom: "From", KindTo: "To",
	KindCallID: "Call-ID", KindCSeq: "CSeq", KindMaxForwards: "Max-Forwards",
	KindContentLength: "Content-Length", KindContentType: "Content-Type",
	KindContentEncoding: "Content-Encoding", KindRoute: "Route",
	KindRecordRoute: "Record-Route", KindContact: "Contact", KindPath: "Path",
	KindSubject: "Subject", KindSupported: "Supported", KindEvent: "Event",
	KindAllowEvents: "Allow-Events", KindReferTo: "Refer-To",
	KindReferredBy: "Referred-By", KindSessionExpires: "Session-Expires",
	KindIdentity: "Identity", KindAcceptContact: "Accept-Contact",
	KindRejectContact: "Reject-Contact", KindRequestDisposition: "Request-Disposition",
	KindRequire: "Require", KindProxyRequire: "Proxy-Require",
	KindProxyAuthorization: "Proxy-Authorization", KindAuthorization: "Authorization",
	KindExpires: "Expires", KindAllow: "Allow", KindUserAgent: "User-Agent",
}

var kindLower = func() (l [numKinds]string) {
	for i, n := range kindNames {
		b := []byte(n)
		for j := range b {
			b[j] = lower(b[j])
		}
		l[i] = string(b)
	}
	return l
}()

// String returns the header's canonical long name, or "" for KindOther.
func (k HeaderKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return ""
}

// compactKind maps a one-letter compact form (lower case) to its kind.
func compactKind(c byte) HeaderKind {
	switch c | 0x20 {
	case 'v':
		return KindVia
	case 'f':
		return KindFrom
	case 't':
		return KindTo
	case 'i':
		return KindCallID
	case 'l':
		return KindContentLength
	case 'c':
		return KindContentType
	case 'e':
		return KindContentEncoding
	case 'm':
		return KindContact
	case 's':
		return KindSubject
	case 'k':
		return KindSupported
	case 'o':
		return KindEvent
	case 'u':
		return KindAllowEvents
	case 'r':
		return KindReferTo
	case 'b':
		return KindReferredBy
	case 'x':
		return KindSessionExpires
	case 'y':
		return KindIdentity
	case 'a':
		return KindAcceptContact
	case 'j':
		return KindRejectContact
	case 'd':
		return KindRequestDisposition
	}
	return KindOther
}

// kindOf classifies a header name, case-insensitively.
func kindOf(name []byte) HeaderKind {
	if len(name) > maxKindName {
		return KindOther
	}
	// kindAt reads whole words: give it the name in a padded buffer.
	var buf [maxKindName + 8]byte
	copy(buf[:], name)
	return kindAt(buf[:], 0, len(name))
}

// maxKindName is the length of the longest header name with a kind.
const maxKindName = 19

// kindAt classifies the header name b[p:p+n]. It reads whole words and so
// wants b to hold at least 8 bytes from p, as a header line nearly always
// does (the colon, the value and the line ending follow the name); a name
// closer than that to the end of a datagram is classified through kindOf's
// padded copy. It runs for every header line, so it has no loops: a
// compact form is one table lookup; a long name's first eight bytes hash
// to the only kind it can be, which word compares confirm. The compares
// fold case only where the known name has a letter, so any bytes may be
// given: only the known name itself, in any case, matches.
func kindAt(b []byte, p, n int) HeaderKind {
	if n == 1 {
		return compactKinds[b[p]]
	}
	if n > maxKindName {
		return KindOther
	}
	if p+8 > len(b) {
		return kindOf(b[p : p+n])
	}
	w0, fw0 := load64(b[p:]), uint64(0)
	if n < 8 {
		w0 &= 1<<(8*n) - 1
		fw0 = (w0 | fold64) & (1<<(8*n) - 1)
	} else {
		fw0 = w0 | fold64
	}
	e := &kindSlots[(fw0^uint64(n))*kindHashMul>>58]
	if w0|e.f0 != e.w0 || int(e.n) != n {
		return KindOther
	}
	if n > 8 && !e.tailMatches(b[p:p+n]) {
		return KindOther
	}
	return e.kind
}

// tailMatches reports whether the name, longer than eight bytes and whose
// first word matched e.w0, matches the rest of e.
func (e *kindWord) tailMatches(name []byte) bool {
	n := len(name)
	return load64(name[n-8:])|e.f1 == e.w1 && (n <= 16 || load64(name[8:])|e.f2 == e.w2)
}

// kindHashMul spreads the first eight bytes of every long header name with
// a kind, folded to lower case, over 64 slots without collisions
// (TestKindOfNearMisses and the tests that parse every name prove it).
const kindHashMul = 0x8d24be9ad149937b

// kindWord is a long header name as kindAt compares it: its length, its
// first, last and middle eight bytes in lower case (the first masked to the
// name, the others zero when the name is too short to need them), the
// matching masks with 0x20 where those bytes are letters, and the kind it
// names. An unused slot has n == 0.
type kindWord struct {
	w0, w1, w2 uint64
	f0, f1, f2 uint64
	n          uint8
	kind       HeaderKind
}

// The lookup tables of kindAt, filled once from kindNames and never
// modified afterwards. kindSlots holds the names themselves, not kinds to
// look up elsewhere: one dependent load less per header line.
var (
	compactKinds [256]HeaderKind
	kindSlots    [64]kindWord
)

func init() {
	for c := 0; c < 256; c++ {
		compactKinds[c] = compactKind(byte(c))
	}
	for k := KindVia; k < numKinds; k++ {
		var name, fold [maxKindName + 8]byte
		n := copy(name[:], kindLower[k])
		for i := 0; i < n; i++ {
			if 'a' <= name[i] && name[i] <= 'z' {
				fold[i] = 0x20
			}
		}
		e := kindWord{n: uint8(n), kind: k, w0: load64(name[:]), f0: load64(fold[:])}
		if n < 8 {
			e.w0 &= 1<<(8*n) - 1
		}
		if n > 8 {
			e.w1, e.f1 = load64(name[n-8:]), load64(fold[n-8:])
		}
		if n > 16 {
			e.w2, e.f2 = load64(name[8:]), load64(fold[8:])
		}
		kindSlots[(e.w0^uint64(n))*kindHashMul>>58] = e
	}
}

// Method identifies the request methods a proxy treats specially. Any other
// method is MethodOther and is forwarded unchanged.
type Method uint8

// The methods of RFC 3261 and the common extensions.
const (
	MethodOther Method = iota
	MethodINVITE
	MethodACK
	MethodBYE
	MethodCANCEL
	MethodOPTIONS
	MethodREGISTER
	MethodPRACK
	MethodSUBSCRIBE
	MethodNOTIFY
	MethodPUBLISH
	MethodINFO
	MethodREFER
	MethodMESSAGE
	MethodUPDATE
)

var methodNames = [...]string{
	MethodOther: "", MethodINVITE: "INVITE", MethodACK: "ACK", MethodBYE: "BYE",
	MethodCANCEL: "CANCEL", MethodOPTIONS: "OPTIONS", MethodREGISTER: "REGISTER",
	MethodPRACK: "PRACK", MethodSUBSCRIBE: "SUBSCRIBE", MethodNOTIFY: "NOTIFY",
	MethodPUBLISH: "PUBLISH", MethodINFO: "INFO", MethodREFER: "REFER",
	MethodMESSAGE: "MESSAGE", MethodUPDATE: "UPDATE",
}

// String returns the method's name, or "" for MethodOther.
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return ""
}

// MethodOf classifies a method name. Method names are case-sensitive
// (RFC 3261 7.1), so "invite" is MethodOther.
func MethodOf(b []byte) Method {
	var m Method
	switch len(b) {
	case 3:
		switch string(b) {
		case "ACK":
			return MethodACK
		case "BYE":
			return MethodBYE
		}
		return MethodOther
	case 4:
		m = MethodINFO
	case 5:
		switch b[0] {
		case 'P':
			m = MethodPRACK
		case 'R':
			m = MethodREFER
		}
	case 6:
		switch b[0] {
		case 'I':
			m = MethodINVITE
		case 'C':
			m = MethodCANCEL
		case 'N':
			m = MethodNOTIFY
		case 'U':
			m = MethodUPDATE
		}
	case 7:
		switch b[0] {
		case 'O':
			m = MethodOPTIONS
		case 'P':
			m = MethodPUBLISH
		case 'M':
			m = MethodMESSAGE
		}
	case 8:
		m = MethodREGISTER
	case 9:
		m = MethodSUBSCRIBE
	}
	if m != MethodOther && string(b) == methodNames[m] {
		return m
	}
	return MethodOther
}
