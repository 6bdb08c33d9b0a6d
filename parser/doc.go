// Package parser is Viaduct's zero-allocation, lazy SIP message parser.
//
// Parse makes one pass over a datagram and records where the start line,
// every header line and the body are, as offsets into the caller's buffer.
// Nothing is copied and nothing is allocated: a Message holds a fixed array
// of header entries and is reused from one datagram to the next. Header
// values are parsed only when an accessor asks for them, so a proxy that
// reads five headers pays for five, not for all of them.
//
// The entry point is
//
//	var m parser.Message
//	if err := parser.Parse(datagram, &m); err != nil { ... }
//
// Every accessor returns either a small value or a sub-slice of the buffer
// given to Parse; those slices are valid for as long as that buffer is not
// overwritten, and Message.Offset turns any of them back into a position in
// the buffer, which is what a rewriting proxy needs.
//
// # What Parse checks
//
// Parse validates what every stateless proxy must rely on for every message:
// the start line (SIP/2.0 only; any other version is ErrBadVersion, which a
// proxy answers with 505), header syntax (a colon after each name, no NUL
// byte, except as a quoted-pair inside a quoted string), the presence of Via,
// From, To, Call-ID and CSeq and that none of them, Max-Forwards nor
// Content-Length appears twice, the Call-ID's characters, the CSeq number
// and method (which must equal the request method), Content-Length and
// Max-Forwards as numbers, the body length, and the syntax of the top Via.
// Everything else is checked by the accessor that reads it: From, To and
// CheckFrom report a malformed display name, white space in the URI or a
// second value; ParseRequestURI what RFC 3261 forbids in a Request-URI; the
// Via iterator a malformed lower Via, and so on.
//
// Errors returned by Parse are always one of the *Error values declared in
// this package, never wrapped, so a caller can compare them with == or read
// their Status and Reason directly; Reason is a short phrase suitable for a
// SIP reason phrase, as in "400 Missing Call-ID".
//
// # Both SIP generations
//
// Messages from RFC 2543 clients are valid: a Via without the z9hG4bK magic
// cookie or without any branch, a missing Max-Forwards, the Via comment
// "(...)" and the hidden parameter are all accepted. Every compact header
// form of RFC 3261 7.3.3 and RFC 2543 section 9 is recognised, header names
// are case-insensitive, folded continuation lines are part of their header's
// value, and a header may appear on several lines or carry several
// comma-separated values on one line (see Message.Vias and Message.Values).
//
// On UDP the body is the Content-Length bytes after the blank line; extra
// bytes are ignored (RFC 3261 18.3) and fewer bytes than announced is
// ErrTruncatedBody. Without Content-Length the body is the rest of the
// datagram.
package parser
