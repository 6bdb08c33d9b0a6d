package balancer

import "container/heap"

// rrSequence returns a smooth weighted round-robin schedule over members:
// each member appears weight/g times in a cycle of W/g entries (g the gcd of
// the weights), spread evenly (stride scheduling: the k-th turn of a member
// of weight w is due at (2k+1)/2w of the cycle; ties go to the lower ID
// hash). Weights 5,1,1 give the cycle a a a b c a a (up to the order of the
// tie at mid-cycle), not a a a a a b c.
func rrSequence(members []member) []uint16 {
	if len(members) == 0 {
		return nil
	}
	g := 0
	for _, m := range members {
		g = gcd(g, m.weight)
	}
	h := make(rrHeap, len(members))
	total := 0
	for i, m := range members {
		h[i] = rrEntry{m: m, w: m.weight / g}
		total += h[i].w
	}
	heap.Init(&h)
	seq := make([]uint16, 0, total)
	for len(seq) < total {
		e := &h[0]
		seq = append(seq, e.m.idx)
		e.k++
		if e.k == e.w {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// rrEntry is a member's next turn: due at (2k+1)/(2w).
type rrEntry struct {
	m    member
	w, k int
}

type rrHeap []rrEntry

func (h rrHeap) Len() int { return len(h) }
func (h rrHeap) Less(i, j int) bool {
	// (2ki+1)/wi < (2kj+1)/wj, exactly, in integers.
	a := (2*h[i].k + 1) * h[j].w
	b := (2*h[j].k + 1) * h[i].w
	if a != b {
		return a < b
	}
	return h[i].m.idHash < h[j].m.idHash
}
func (h rrHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *rrHeap) Push(x any)   { *h = append(*h, x.(rrEntry)) }
func (h *rrHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
