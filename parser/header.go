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

// kindOf classifies a header name, case-insensitively. It runs once per
// header line, so it avoids loops and branches on the name: a compact form
// is one table lookup; a long name hashes its length, first and last letter
// to the only kind it can be, and the name is then confirmed with two word
// compares.
func kindOf(name []byte) HeaderKind {
	n := len(name)
	switch {
	case n == 1:
		return compactKinds[name[0]]
	case n < 2 || n > 19:
		return KindOther
	}
	k := kindSlots[kindHash(name[0], name[n-1], n)]
	e := &kindWords[k]
	w0, w1, w2 := nameWords(name)
	if int(e.n) == n && e.w0 == w0 && e.w1 == w1 && e.w2 == w2 {
		return k
	}
	return KindOther
}

// kindHash maps a long header name to its slot in kindSlots. The constants
// give each known name a slot of its own (TestKindOfEveryName proves it).
func kindHash(first, last byte, n int) uint8 {
	return uint8((uint(first|0x20)*53 + uint(last|0x20)*18 + uint(n)) & 63)
}

// nameWords folds a name of 2 to 24 token characters to lower case into
// words that, with its length, identify it exactly: its first, middle and
// last eight bytes (overlapping where it is shorter than 24), its first and
// last four, or for two or three bytes all of them.
func nameWords(b []byte) (w0, w1, w2 uint64) {
	n := len(b)
	switch {
	case n > 16:
		return load64(b) | fold64, load64(b[n-8:]) | fold64, load64(b[8:]) | fold64
	case n >= 8:
		return load64(b) | fold64, load64(b[n-8:]) | fold64, 0
	case n >= 4:
		return uint64(load32(b) | fold32), uint64(load32(b[n-4:]) | fold32), 0
	}
	return uint64(b[0]|0x20) | uint64(b[1]|0x20)<<8 | uint64(b[n-1]|0x20)<<16, 0, 0
}

// kindWord is a long header name as kindOf compares it.
type kindWord struct {
	n          uint8
	w0, w1, w2 uint64
}

// The lookup tables of kindOf, filled once from kindNames and never
// modified afterwards.
var (
	compactKinds [256]HeaderKind
	kindSlots    [64]HeaderKind
	kindWords    [numKinds]kindWord
)

func init() {
	for c := 0; c < 256; c++ {
		compactKinds[c] = compactKind(byte(c))
	}
	for k := KindVia; k < numKinds; k++ {
		name := []byte(kindLower[k])
		n := len(name)
		kindSlots[kindHash(name[0], name[n-1], n)] = k
		w0, w1, w2 := nameWords(name)
		kindWords[k] = kindWord{uint8(n), w0, w1, w2}
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
