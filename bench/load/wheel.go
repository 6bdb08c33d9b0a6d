package load

import (
	"math"
	"math/bits"
)

const (
	wheelTickShift = 20 // a tick is 2^20 ns, about 1.05 ms
	wheelSlots     = 4096
	wheelMask      = wheelSlots - 1
	wheelWords     = wheelSlots / 64
	nilIdx         = -1
	idle           = math.MinInt64
)

// wheel is a hashed timing wheel over a fixed set of timers identified by
// index 0..n-1 (one per call slot): each timer is either idle or armed with
// one deadline. Arming, disarming and firing are O(1) and allocate nothing;
// the links live in preallocated arrays (an intrusive doubly linked list
// per wheel slot), and a bitmap of non-empty slots finds the next deadline
// without scanning the wheel. Deadlines further away than one revolution
// (about 4.3 s) stay in their slot and are skipped until their round comes.
type wheel struct {
	head     [wheelSlots]int32
	occupied [wheelWords]uint64
	next     []int32
	prev     []int32
	slot     []int32
	deadline []int64 // idle when not armed
	due      []int32 // scratch for advance
	cur      int64   // tick up to which timers have been processed
	armed    int
}

func newWheel(n int, now int64) *wheel {
	w := &wheel{
		next:     make([]int32, n),
		prev:     make([]int32, n),
		slot:     make([]int32, n),
		deadline: make([]int64, n),
		due:      make([]int32, 0, n),
		cur:      now >> wheelTickShift,
	}
	for i := range w.head {
		w.head[i] = nilIdx
	}
	for i := range w.deadline {
		w.deadline[i] = idle
	}
	return w
}

// isArmed reports whether timer i has a deadline.
func (w *wheel) isArmed(i int32) bool { return w.deadline[i] != idle }

// set arms timer i for deadline, replacing any previous deadline.
func (w *wheel) set(i int32, deadline int64) {
	if w.isArmed(i) {
		w.unlink(i)
	} else {
		w.armed++
	}
	w.deadline[i] = deadline
	t := deadline >> wheelTickShift
	if t < w.cur {
		t = w.cur
	}
	s := int32(t & wheelMask)
	h := w.head[s]
	w.next[i], w.prev[i], w.slot[i] = h, nilIdx, s
	if h != nilIdx {
		w.prev[h] = i
	}
	w.head[s] = i
	w.occupied[s>>6] |= 1 << uint(s&63)
}

// stop disarms timer i if it is armed.
func (w *wheel) stop(i int32) {
	if !w.isArmed(i) {
		return
	}
	w.unlink(i)
	w.deadline[i] = idle
	w.armed--
}

func (w *wheel) unlink(i int32) {
	n, p := w.next[i], w.prev[i]
	if p != nilIdx {
		w.next[p] = n
	} else {
		s := w.slot[i]
		w.head[s] = n
		if n == nilIdx {
			w.occupied[s>>6] &^= 1 << uint(s&63)
		}
	}
	if n != nilIdx {
		w.prev[n] = p
	}
}

// advance fires every timer whose deadline is <= now, in tick order (in no
// particular order within a tick), calling fire(i) after disarming i. fire
// may arm or disarm any timer, including i.
func (w *wheel) advance(now int64, fire func(i int32)) {
	end := now >> wheelTickShift
	if w.armed == 0 {
		if end > w.cur {
			w.cur = end
		}
		return
	}
	start := w.cur
	if end-start >= wheelSlots {
		start = end - wheelSlots + 1
	}
	for t := start; t <= end; t++ {
		w.cur = t
		s := int32(t & wheelMask)
		for w.occupied[s>>6]&(1<<uint(s&63)) != 0 {
			due := w.due[:0]
			for i := w.head[s]; i != nilIdx; i = w.next[i] {
				if w.deadline[i] <= now {
					due = append(due, i)
				}
			}
			if len(due) == 0 {
				break
			}
			for _, i := range due {
				w.stop(i)
			}
			for _, i := range due {
				fire(i)
			}
			w.due = due[:0]
		}
	}
	if end > w.cur {
		w.cur = end
	}
}

// nextDeadline returns an instant at or before the earliest armed deadline
// (the start of the earliest non-empty tick), or math.MaxInt64 if no timer
// is armed.
func (w *wheel) nextDeadline() int64 {
	if w.armed == 0 {
		return math.MaxInt64
	}
	c := w.cur & wheelMask
	for k := int64(0); k <= wheelWords; k++ {
		word := (c>>6 + k) & (wheelWords - 1)
		m := w.occupied[word]
		if k == 0 {
			m &= ^uint64(0) << uint(c&63)
		} else if k == wheelWords {
			m &= 1<<uint(c&63) - 1
		}
		if m != 0 {
			s := word<<6 + int64(bits.TrailingZeros64(m))
			d := (s - c) & wheelMask
			return (w.cur + d) << wheelTickShift
		}
	}
	return (w.cur + 1) << wheelTickShift
}
