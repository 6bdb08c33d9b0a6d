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
	if len(name) == 1 {
		return compactKind(name[0])
	}
	// Dispatch on length and first letter, then confirm with one compare.
	var k HeaderKind
	switch len(name) {
	case 2:
		k = KindTo
	case 3:
		k = KindVia
	case 4:
		switch lower(name[0]) {
		case 'f':
			k = KindFrom
		case 'c':
			k = KindCSeq
		case 'p':
			k = KindPath
		}
	case 5:
		switch lower(name[0]) {
		case 'r':
			k = KindRoute
		case 'e':
			k = KindEvent
		case 'a':
			k = KindAllow
		}
	case 7:
		switch lower(name[0]) {
		case 'c':
			switch lower(name[1]) {
			case 'a':
				k = KindCallID
			case 'o':
				k = KindContact
			}
		case 's':
			k = KindSubject
		case 'r':
			k = KindRequire
		case 'e':
			k = KindExpires
		}
	case 8:
		switch lower(name[0]) {
		case 'r':
			k = KindReferTo
		case 'i':
			k = KindIdentity
		}
	case 9:
		k = KindSupported
	case 10:
		k = KindUserAgent
	case 11:
		k = KindReferredBy
	case 12:
		switch lower(name[0]) {
		case 'm':
			k = KindMaxForwards
		case 'c':
			k = KindContentType
		case 'r':
			k = KindRecordRoute
		case 'a':
			k = KindAllowEvents
		}
	case 13:
		switch lower(name[0]) {
		case 'p':
			k = KindProxyRequire
		case 'a':
			k = KindAuthorization
		}
	case 14:
		switch lower(name[0]) {
		case 'c':
			k = KindContentLength
		case 'a':
			k = KindAcceptContact
		case 'r':
			k = KindRejectContact
		}
	case 15:
		k = KindSessionExpires
	case 16:
		k = KindContentEncoding
	case 19:
		switch lower(name[0]) {
		case 'r':
			k = KindRequestDisposition
		case 'p':
			k = KindProxyAuthorization
		}
	}
	if k != KindOther && equalFoldLower(name, kindLower[k]) {
		return k
	}
	return KindOther
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
