package parser

// Error is a parse failure. Status is the SIP status code a proxy should
// answer a faulty request with (400, or 505 for an unsupported version) and
// Reason is a short phrase naming the fault, fit to be used as that
// response's reason phrase.
//
// All errors returned by Parse are one of the values declared below.
type Error struct {
	Status int
	Reason string
}

// Error implements the error interface.
func (e *Error) Error() string { return "sip: " + e.Reason }

// The errors Parse and the accessors return.
var (
	ErrEmpty              = &Error{400, "Empty Message"}
	ErrBadStartLine       = &Error{400, "Malformed Start Line"}
	ErrBadVersion         = &Error{505, "Version Not Supported"}
	ErrBadStatus          = &Error{400, "Malformed Status Code"}
	ErrBadHeader          = &Error{400, "Malformed Header"}
	ErrNULInHeader        = &Error{400, "NUL In Header"}
	ErrTooManyHeaders     = &Error{400, "Too Many Headers"}
	ErrNoEndOfHeaders     = &Error{400, "Missing End Of Headers"}
	ErrMissingVia         = &Error{400, "Missing Via"}
	ErrMissingFrom        = &Error{400, "Missing From"}
	ErrMissingTo          = &Error{400, "Missing To"}
	ErrMissingCallID      = &Error{400, "Missing Call-ID"}
	ErrMissingCSeq        = &Error{400, "Missing CSeq"}
	ErrBadCSeq            = &Error{400, "Malformed CSeq"}
	ErrCSeqMethodMismatch = &Error{400, "CSeq Method Mismatch"}
	ErrBadContentLength   = &Error{400, "Malformed Content-Length"}
	ErrBadMaxForwards     = &Error{400, "Malformed Max-Forwards"}
	ErrTruncatedBody      = &Error{400, "Body Shorter Than Content-Length"}
	ErrBadVia             = &Error{400, "Malformed Via"}
	ErrBadPort            = &Error{400, "Malformed Port"}
	ErrBadNameAddr        = &Error{400, "Malformed Address"}
	ErrUnterminatedQuote  = &Error{400, "Unterminated Quoted String"}
	ErrUnterminatedAngle  = &Error{400, "Unterminated Angle Bracket"}
	ErrBadURI             = &Error{400, "Malformed URI"}
	ErrBadEscape          = &Error{400, "Malformed Escape"}
	ErrBadCallID          = &Error{400, "Malformed Call-ID"}

	// A header the grammar allows once (RFC 3261 20: Call-ID, From, To,
	// CSeq, Max-Forwards, Content-Length) on several lines or with several
	// comma-separated values.
	ErrMultipleCallID           = &Error{400, "Multiple Call-ID"}
	ErrMultipleFrom             = &Error{400, "Multiple From"}
	ErrMultipleTo               = &Error{400, "Multiple To"}
	ErrMultipleCSeq             = &Error{400, "Multiple CSeq"}
	ErrMultipleMaxForwards      = &Error{400, "Multiple Max-Forwards"}
	ErrMultipleContentLength    = &Error{400, "Multiple Content-Length"}
	ErrConflictingContentLength = &Error{400, "Conflicting Content-Length"}

	// URIs (RFC 3261 19.1, 25.1).
	ErrURIWhiteSpace        = &Error{400, "White Space In URI"}
	ErrBadIPv6              = &Error{400, "Malformed IPv6 Reference"}
	ErrIPv6NoBrackets       = &Error{400, "IPv6 Address Without Brackets"}
	ErrRequestURIAngle      = &Error{400, "Request-URI In Angle Brackets"}
	ErrRequestURIHeaders    = &Error{400, "Headers In Request-URI"}
	ErrRequestURIWhiteSpace = &Error{400, "White Space In Request-URI"}

	// name-addr (RFC 3261 25.1): an unquoted display name is tokens and
	// LWS; the URI in angle brackets holds no white space. From and To
	// name the header.
	ErrBadDisplayName     = &Error{400, "Malformed Display Name"}
	ErrAddrList           = &Error{400, "Several Addresses Where One Is Allowed"}
	ErrBadFromDisplayName = &Error{400, "Malformed From Display Name"}
	ErrBadToDisplayName   = &Error{400, "Malformed To Display Name"}
	ErrFromURIWhiteSpace  = &Error{400, "White Space In From URI"}
	ErrToURIWhiteSpace    = &Error{400, "White Space In To URI"}
)
