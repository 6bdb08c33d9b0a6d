package fastpath

// maxEdits bounds the edits one rewrite makes: our Via, Record-Route,
// received, rport, Max-Forwards, two Route removals, the Request-URI.
const maxEdits = 12

// edit replaces in[start:end] with repl (an insertion when start == end, a
// deletion when repl is empty).
type edit struct {
	start, end int
	repl       []byte
}

// editList is a small set of non-overlapping edits, applied in one copy.
// Insertions at the same offset keep the order in which they were added.
type editList struct {
	e [maxEdits]edit
	n int
}

func (l *editList) reset() { l.n = 0 }

// add records an edit; it returns false (and records nothing) when the list
// is full, which the callers' fixed edit counts make impossible.
func (l *editList) add(start, end int, repl []byte) bool {
	if l.n == maxEdits {
		return false
	}
	// insertion sort by start, stable
	i := l.n
	for i > 0 && l.e[i-1].start > start {
		l.e[i] = l.e[i-1]
		i--
	}
	l.e[i] = edit{start: start, end: end, repl: repl}
	l.n++
	return true
}

// apply appends in with the edits applied to dst.
func (l *editList) apply(dst, in []byte) []byte {
	pos := 0
	for i := 0; i < l.n; i++ {
		e := &l.e[i]
		if e.start > pos {
			dst = append(dst, in[pos:e.start]...)
		}
		dst = append(dst, e.repl...)
		if e.end > pos {
			pos = e.end
		}
	}
	return append(dst, in[pos:]...)
}

// outPos maps an offset x of the input to the offset where the byte at x
// lands in the output (relative to the output's start). Insertions at x come
// before it. x must not lie strictly inside a replaced range.
func (l *editList) outPos(x int) int {
	d := 0
	for i := 0; i < l.n; i++ {
		e := &l.e[i]
		if e.start < x || (e.start == x && e.end == x) {
			d += len(e.repl) - (e.end - e.start)
		}
	}
	return x + d
}

// outPosStrict is outPos without the insertions at x: where the first
// insertion made at x lands in the output.
func (l *editList) outPosStrict(x int) int {
	d := 0
	for i := 0; i < l.n; i++ {
		e := &l.e[i]
		if e.start < x {
			d += len(e.repl) - (e.end - e.start)
		}
	}
	return x + d
}

// applyRange appends in[from:to] with the edits that lie inside it applied.
func (l *editList) applyRange(dst, in []byte, from, to int) []byte {
	pos := from
	for i := 0; i < l.n; i++ {
		e := &l.e[i]
		if e.start < from || e.end > to {
			continue
		}
		if e.start > pos {
			dst = append(dst, in[pos:e.start]...)
		}
		dst = append(dst, e.repl...)
		if e.end > pos {
			pos = e.end
		}
	}
	return append(dst, in[pos:to]...)
}
