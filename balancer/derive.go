package balancer

import "math/bits"

// fullBuildCost estimates a full build in direct-evaluation units (one
// replica ranking one bucket), from measurements: about NumBuckets *
// (2 + log2(W)/4).
func fullBuildCost(weight int) float64 {
	return NumBuckets * (2 + float64(bits.Len(uint(weight)))/4)
}

// deriveCost estimates derive(par -> members) in the units of
// fullBuildCost: a copy pass; for every bucket whose owner remains, its
// owner's and the added members' replicas; for every bucket whose owner left,
// all replicas.
func deriveCost(par *lookup, members []member, weight int) float64 {
	var keptW, addedW, sq int
	j := 0
	for _, m := range members {
		for j < len(par.members) && par.members[j].idHash < m.idHash {
			j++
		}
		if j < len(par.members) && par.members[j].idHash == m.idHash && par.members[j].weight == m.weight {
			keptW += m.weight
			sq += m.weight * m.weight
		} else {
			addedW += m.weight
		}
	}
	removed := float64(par.weight-keptW) / float64(par.weight)
	cost := NumBuckets/8 + NumBuckets*removed*float64(weight)
	if addedW > 0 {
		scan, enum := addCosts(par.maxRank, keptW, addedW, sq)
		cost += min(scan, enum)
	}
	return cost
}

// Ways for derive to place added members (Options.addBy, tests only).
const (
	addByScan = 1
	addByEnum = 2
)

// addCosts estimates the two ways derive can place added members: scanning
// every bucket (compare its owner's best replica with the added ones') or
// enumerating the added replicas' buckets up to the parent's rank bound
// (compare each with its current owner's best replica). sq/keptW is the
// expected weight of a bucket's owner.
func addCosts(maxRank uint32, keptW, addedW, sq int) (scan, enum float64) {
	ownerW := float64(sq) / float64(max(keptW, 1))
	scan = NumBuckets * (ownerW + float64(addedW))
	enum = float64(addedW) * (float64(maxRank) + 1) * (1 + ownerW)
	return scan, enum
}

// derive computes the bucket array for members from par, the lookup of
// another member set, and a bound of its winning ranks. A member is kept if
// par has it with the same weight, added otherwise; par's other members are
// removed. Buckets whose parent owner was removed are evaluated against
// every replica. A bucket whose parent owner o is kept stays with o unless
// an added replica beats o's best, because o already beat every other kept
// member: with few added members and a low rank bound, derive enumerates
// the buckets each added replica ranks within the bound (an added replica
// can only win a bucket it ranks no lower than the bucket's current owner,
// which ranks it at most par.maxRank); otherwise it scans every bucket.
// When the sets are equal no bucket is evaluated, and the array is shared
// outright if the target indices did not move either.
//
//go:norace
func derive(bd *builder, par *lookup, members []member, nTargets, addBy int) (owners, uint32) {
	reps := bd.makeReplicas(members)
	// remap: parent target index -> new target index, or -1 if removed.
	maxIdx := 0
	for _, m := range par.members {
		maxIdx = max(maxIdx, int(m.idx))
	}
	remap := make([]int32, maxIdx+1)
	for i := range remap {
		remap[i] = -1
	}
	// span: new target index -> its replicas in reps.
	span := make([][2]int32, nTargets)
	var added []replica
	identity := len(par.members) == len(members)
	keptW, sq := 0, 0
	j, r := 0, int32(0)
	for _, m := range members {
		span[m.idx] = [2]int32{r, r + int32(m.weight)}
		for j < len(par.members) && par.members[j].idHash < m.idHash {
			j++
		}
		if j < len(par.members) && par.members[j].idHash == m.idHash && par.members[j].weight == m.weight {
			remap[par.members[j].idx] = int32(m.idx)
			identity = identity && par.members[j].idx == m.idx
			keptW += m.weight
			sq += m.weight * m.weight
		} else {
			added = append(added, reps[r:r+int32(m.weight)]...)
			identity = false
		}
		r += int32(m.weight)
	}
	if identity && (par.own.own8 != nil) == (nTargets <= 1<<8) {
		return par.own, par.maxRank // same members, same indices, same width: share
	}
	scan, enum := addCosts(par.maxRank, keptW, len(added), sq)
	scanAdded := len(added) > 0 && (addBy == addByScan || addBy == 0 && scan <= enum)
	// best returns the best replica of target idx for bucket b.
	best := func(idx uint16, b uint32) (*replica, uint32) {
		sp := span[idx]
		kept := reps[sp[0]:sp[1]]
		i, rank := directBest(kept, b)
		return &kept[i], rank
	}
	own := newOwners(nTargets)
	var todo []uint32
	switch {
	case scanAdded:
		for b := uint32(0); b < NumBuckets; b++ {
			n := remap[par.own.get(b)]
			if n < 0 {
				todo = append(todo, b)
				continue
			}
			kr, krank := best(uint16(n), b)
			ai, arank := directBest(added, b)
			if arank < krank || (arank == krank && beats(&added[ai], kr, b)) {
				n = int32(added[ai].owner)
			}
			own.set(b, uint16(n))
		}
	case par.own.own8 != nil && own.own8 != nil:
		todo = remapInto(par.own.own8, own.own8, remap)
	case par.own.own8 != nil:
		todo = remapInto(par.own.own8, own.own16, remap)
	case own.own8 != nil:
		todo = remapInto(par.own.own16, own.own8, remap)
	default:
		todo = remapInto(par.own.own16, own.own16, remap)
	}
	maxRank := max(par.maxRank, bd.fill(reps, own, todo))
	if len(added) > 0 && !scanAdded {
		for ai := range added {
			a := &added[ai]
			for rank := uint32(0); rank <= par.maxRank; rank++ {
				b := a.bucketAt(rank)
				cur := own.get(b)
				if cur == a.owner {
					continue
				}
				or, orank := best(cur, b)
				if rank < orank || (rank == orank && beats(a, or, b)) {
					own.set(b, a.owner)
				}
			}
		}
	}
	return own, maxRank
}

// remapInto copies src to dst through remap and returns the buckets whose
// owner remap drops (-1), leaving them for the caller to fill.
//
//go:norace
func remapInto[S, D uint8 | uint16](src *[NumBuckets]S, dst *[NumBuckets]D, remap []int32) []uint32 {
	var todo []uint32
	for b, o := range src {
		n := remap[o]
		if n < 0 {
			todo = append(todo, uint32(b))
			continue
		}
		dst[b] = D(n)
	}
	return todo
}
