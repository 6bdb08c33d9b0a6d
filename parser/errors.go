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
)
