package fastpath

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/viaduct-sip/viaduct/parser"
)

// DropLogRate is how many lines a second an engine logs, at most, about
// the messages it drops or refuses, all workers together, when its logger
// is enabled at debug level (and none otherwise). Each of an engine's W
// workers (Config.Workers per listen address) has its own token bucket of
// DropLogRate/W lines a second with bursts of max(1, DropLogRate/W) lines,
// so no lock is shared and a flood cannot fill the disk. A line logged
// after some were suppressed says how many ("suppressed"), and
// Stats.DropLogsSuppressed counts them. The logger's level is read when
// the engine starts; workers made by NewWorker log nothing.
const DropLogRate = 10

// The longest attacker-supplied values a drop log line carries (bytes of
// the datagram, before escaping).
const (
	maxLoggedCallID = 64
	maxLoggedMethod = 32
	maxLoggedPhrase = 64
)

// dropLog logs one worker's dropped and refused messages at debug level,
// rate-limited. It belongs to its worker: no lock; a forwarded message
// costs it nothing, a dropped one a clock read, and the formatting is done
// only for the lines the bucket allows.
type dropLog struct {
	log        *slog.Logger
	c          *counters
	bucket     tokenBucket
	suppressed uint64           // lines suppressed since the last one logged
	now        func() time.Time // time.Now; tests replace it
}

// newDropLog returns the drop log of one of workers workers, or nil when
// the engine's logger is not enabled at debug level.
func (e *Engine) newDropLog(c *counters, workers int) *dropLog {
	if !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	workers = max(workers, 1)
	now := e.dropClock
	if now == nil {
		now = time.Now
	}
	return &dropLog{
		log:    e.log,
		c:      c,
		bucket: newTokenBucket(time.Duration(workers)*time.Second/DropLogRate, max(1, DropLogRate/workers)),
		now:    now,
	}
}

// record logs a message Handle dropped or refused (in gave o), as far as the
// bucket allows.
func (d *dropLog) record(in []byte, from netip.AddrPort, o *Output) {
	if o.Drop == DropNone || !d.allow(d.now()) {
		return
	}
	d.logDrop(in, from, o)
}

// logSendError logs a datagram the kernel refused to send (DropSendError),
// as far as the bucket allows.
func (d *dropLog) logSendError(b []byte, to netip.AddrPort, err error) {
	if !d.allow(d.now()) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("to", to.String()), slog.String("reason", DropSendError.String()))
	attrs = appendMessageAttrs(attrs, b)
	attrs = append(attrs, slog.Any("err", err))
	d.emit("message not sent", attrs)
}

// allow takes a token, or counts a suppressed line.
func (d *dropLog) allow(now time.Time) bool {
	if d.bucket.take(now) {
		return true
	}
	d.suppressed++
	d.c.dropLogSuppressed.inc()
	return false
}

// logDrop logs one dropped message, or one refused request with the reply
// it got (read back from the reply itself).
func (d *dropLog) logDrop(in []byte, from netip.AddrPort, o *Output) {
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("from", from.String()), slog.String("reason", o.Drop.String()))
	msg := "message dropped"
	if code, phrase, ok := replyStatus(o); ok {
		msg = "request refused"
		attrs = append(attrs, slog.Int("code", code), slog.String("phrase", escapeLogValue(phrase, maxLoggedPhrase)))
	}
	attrs = appendMessageAttrs(attrs, in)
	d.emit(msg, attrs)
}

// emit logs a line, with the count of the lines suppressed before it.
func (d *dropLog) emit(msg string, attrs []slog.Attr) {
	if d.suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", d.suppressed))
		d.suppressed = 0
	}
	d.log.LogAttrs(context.Background(), slog.LevelDebug, msg, attrs...)
}

// replyStatus returns the status code and reason phrase of the local reply
// in o, if Handle made one (ActionReply: a destination and a status line).
func replyStatus(o *Output) (code int, phrase []byte, ok bool) {
	const prefix = "SIP/2.0 "
	b := o.Buf
	if !o.To.IsValid() || len(b) < len(prefix)+4 || string(b[:len(prefix)]) != prefix || b[len(prefix)+3] != ' ' {
		return 0, nil, false
	}
	code, err := strconv.Atoi(string(b[len(prefix) : len(prefix)+3]))
	if err != nil {
		return 0, nil, false
	}
	phrase = b[len(prefix)+4:]
	for i, c := range phrase {
		if c == '\r' || c == '\n' {
			phrase = phrase[:i]
			break
		}
	}
	return code, phrase, true
}

// appendMessageAttrs appends what the raw datagram b says of itself: its
// method (a request) or status code (a response), and its Call-ID, read
// with the same tolerant scan as local replies (b may not parse),
// truncated and escaped.
func appendMessageAttrs(attrs []slog.Attr, b []byte) []slog.Attr {
	start := trimLeadingCRLF(b)
	first := start
	for i, c := range start {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			first = start[:i]
			break
		}
	}
	if looksLikeResponse(start) {
		code := start[len(first):]
		for len(code) > 0 && (code[0] == ' ' || code[0] == '\t') {
			code = code[1:]
		}
		attrs = append(attrs, slog.String("status", escapeLogValue(code[:min(3, len(code))], 3)))
	} else {
		attrs = append(attrs, slog.String("method", escapeLogValue(first, maxLoggedMethod)))
	}
	return append(attrs, slog.String("call_id", escapeLogValue(rawCallID(b), maxLoggedCallID)))
}

// rawCallID returns the value of the first Call-ID header line of b, or
// nil.
func rawCallID(b []byte) []byte {
	for p := headerStart(b); ; {
		l, ok := nextRawLine(b, p)
		if !ok {
			return nil
		}
		if l.kind == parser.KindCallID {
			return b[l.vs:l.ve]
		}
		p = l.end
	}
}

// escapeLogValue returns b for a log line: at most limit bytes of it
// (then "..."), printable ASCII as is, a backslash doubled and any other
// byte (control characters, line ends, non-ASCII) as \xHH.
func escapeLogValue(b []byte, limit int) string {
	cut := len(b) > limit
	if cut {
		b = b[:limit]
	}
	out := make([]byte, 0, len(b)+3)
	const hex = "0123456789abcdef"
	for _, c := range b {
		switch {
		case c == '\\':
			out = append(out, '\\', '\\')
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		default:
			out = append(out, '\\', 'x', hex[c>>4], hex[c&0xf])
		}
	}
	if cut {
		out = append(out, "..."...)
	}
	return string(out)
}

// tokenBucket allows up to burst events at once and one more per interval.
// It is not safe for concurrent use.
type tokenBucket struct {
	interval time.Duration
	burst    int
	tokens   int
	last     time.Time // when the bucket last gained a token (or was last full)
}

func newTokenBucket(interval time.Duration, burst int) tokenBucket {
	return tokenBucket{interval: interval, burst: burst, tokens: burst}
}

// take takes a token at time now if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	if b.tokens < b.burst {
		if n := now.Sub(b.last) / b.interval; n >= time.Duration(b.burst-b.tokens) {
			b.tokens = b.burst
		} else if n > 0 {
			b.tokens += int(n)
			b.last = b.last.Add(n * b.interval)
		}
	}
	if b.tokens == 0 {
		return false
	}
	if b.tokens == b.burst {
		b.last = now // a full bucket gains nothing: refilling starts now
	}
	b.tokens--
	return true
}
