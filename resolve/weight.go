package resolve

// SRVScale is the balancer weight the heaviest SRV record of a priority
// group maps to when weights must be scaled (see SRVWeights).
const SRVScale = 100

// SRVWeights maps the weights of the SRV records of one priority group
// (RFC 2782: 0..65535) to balancer weights (1..balancer.MaxWeight), keeping
// their ratios and RFC 2782's meaning of weight 0:
//
//   - If every weight is 0, every record gets weight 1: RFC 2782 then
//     selects among them uniformly.
//   - Otherwise, with m the largest weight: if m <= SRVScale, every weight
//     is multiplied by the integer SRVScale/m (exact ratios: 60 and 40 stay
//     60 and 40, 1 and 2 become 50 and 100); if m > SRVScale, weights are
//     scaled to m -> SRVScale and rounded (ratios kept within 1%). A
//     nonzero weight never maps below 1.
//   - A weight of 0 next to nonzero weights maps to 1, so such a record
//     receives at most about 1% of the group's new calls: RFC 2782's
//     "very small chance of being selected", while the balancer, which
//     refuses weight 0, still counts it as a member (it takes the whole
//     group's traffic if it is the only one left up).
//
// The result has one entry per input weight, in the same order.
func SRVWeights(weights []uint16) []int {
	out := make([]int, len(weights))
	var m int
	for _, w := range weights {
		m = max(m, int(w))
	}
	for i, w := range weights {
		switch {
		case m == 0 || w == 0:
			out[i] = 1
		case m <= SRVScale:
			out[i] = int(w) * (SRVScale / m)
		default:
			out[i] = max(1, (int(w)*SRVScale+m/2)/m)
		}
	}
	return out
}

// splitWeight divides a record's weight w over the n addresses of its
// target host, so that a host with several addresses gets the record's
// share, not n times it. Each address keeps at least weight 1.
func splitWeight(w, n int) int {
	if n <= 1 {
		return w
	}
	return max(1, (w+n/2)/n)
}
