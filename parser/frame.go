package parser

import "bytes"

// Stream framing (RFC 3261 18.3): on TCP, TLS and WebSocket the Content-Length
// header field says where a message ends, and it is mandatory.

// The framing errors FrameStream returns besides ErrMultipleContentLength,
// ErrConflictingContentLength and ErrBadContentLength.
var (
	ErrNoContentLength = &Error{400, "Missing Content-Length"}
	ErrFrameTooLarge   = &Error{513, "Message Too Large"}
	ErrHeadersTooLarge = &Error{513, "Headers Too Large"}
)

// Frame is where FrameStream found a message to end.
type Frame struct {
	// Headers is the length of the start line and header fields with the
	// empty line that ends them: where the body starts.
	Headers int
	// Len is the length of the whole message, body included; 0 while
	// more bytes are needed to know it or to hold the message.
	Len int
}

// FrameStream finds the first message in b, bytes read from a stream that
// start at a message (leading CR LF keepalives already skipped), a message
// being allowed at most max bytes. It returns the frame once b holds the
// whole message; a Frame with Len 0 and no error when more bytes are
// needed; or an error, the stream then being unusable: no Content-Length
// (ErrNoContentLength), several (ErrMultipleContentLength,
// ErrConflictingContentLength), a malformed one (ErrBadContentLength), or a
// message longer than max (ErrFrameTooLarge, ErrHeadersTooLarge when no
// empty line ends the headers within max bytes). With an error other than
// ErrHeadersTooLarge, Headers is set, so that the caller can hand the
// header block to whoever answers 400 or 513. It does not allocate.
func FrameStream(b []byte, max int) (Frame, error) {
	var f Frame
	end, ok := headersEnd(b)
	if !ok {
		if len(b) > max {
			return f, ErrHeadersTooLarge
		}
		return f, nil
	}
	f.Headers = end
	cl, err := streamContentLength(b[:end])
	if err != nil {
		return f, err
	}
	if cl > max-end {
		return f, ErrFrameTooLarge
	}
	if len(b) >= end+cl {
		f.Len = end + cl
	}
	return f, nil
}

// headersEnd returns the offset just past the empty line that ends the
// headers: CR LF CR LF, or LF LF from a client that ends lines with LF.
func headersEnd(b []byte) (int, bool) {
	for p := 0; p < len(b); {
		i := bytes.IndexByte(b[p:], '\n')
		if i < 0 {
			return 0, false
		}
		p += i + 1
		switch {
		case p < len(b) && b[p] == '\n':
			return p + 1, true
		case p+1 < len(b) && b[p] == '\r' && b[p+1] == '\n':
			return p + 2, true
		}
	}
	return 0, false
}

// streamContentLength reads the one Content-Length of the header block h
// (start line included). Several fields with one value are refused as on
// datagrams (the parser's rule): framing must not depend on which one a
// peer believes.
func streamContentLength(h []byte) (int, error) {
	n, found := 0, false
	for p := bytes.IndexByte(h, '\n') + 1; p > 0 && p < len(h); {
		e := bytes.IndexByte(h[p:], '\n')
		if e < 0 {
			e = len(h) - p
		}
		line := h[p : p+e]
		p += e + 1
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || KindOf(bytes.TrimRight(line[:colon], " \t")) != KindContentLength {
			continue
		}
		v, err := contentLengthValue(bytes.TrimSpace(line[colon+1:]))
		switch {
		case err != nil:
			return 0, err
		case found && v != n:
			return 0, ErrConflictingContentLength
		case found:
			return 0, ErrMultipleContentLength
		}
		n, found = v, true
	}
	if !found {
		return 0, ErrNoContentLength
	}
	return n, nil
}

// contentLengthValue parses 1*DIGIT, refusing values that would overflow.
func contentLengthValue(v []byte) (int, error) {
	if len(v) == 0 || len(v) > 9 {
		return 0, ErrBadContentLength
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, ErrBadContentLength
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
