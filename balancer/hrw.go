package balancer

// Bucket table geometry. The key hash's top BucketBits bits select one of
// NumBuckets buckets. The constant never depends on the number of targets:
// that is what makes the mapping consistent across pool sizes.
const (
	// BucketBits is log2 of the number of buckets in a consistent-hash
	// lookup table.
	BucketBits = 20
	// NumBuckets is the number of buckets in a consistent-hash lookup table
	// (1,048,576). A table costs one byte per bucket (1 MiB) for pools of up
	// to 256 targets and two bytes (2 MiB) for larger pools.
	NumBuckets = 1 << BucketBits

	bucketShift = 64 - BucketBits
	halfBits    = BucketBits / 2
	halfMask    = 1<<halfBits - 1
	feistelRnds = 4
)

// replica is one unit of weight of one target: a target of weight w owns w
// replicas, each with its own pseudo-random permutation of the buckets.
type replica struct {
	rk     [feistelRnds]uint64 // Feistel round keys
	tie    uint64              // key of the tie-break hash
	idHash uint64              // the owning target's ID hash (final tie-break)
	owner  uint16              // index of the owning target in Table.targets
	j      uint16              // replica number within its target
}

// mix64 is the splitmix64 finaliser: a fast bijective 64-bit mixer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

const golden = 0x9e3779b97f4a7c15

// newReplica derives the keys of replica j of the target whose ID hashes to
// idHash. Everything is a pure function of (idHash, j).
func newReplica(idHash uint64, j int, owner uint16) replica {
	base := mix64(idHash ^ mix64(uint64(j)+golden))
	r := replica{idHash: idHash, owner: owner, j: uint16(j)}
	for i := range r.rk {
		r.rk[i] = mix64(base + uint64(i+1)*golden)
	}
	r.tie = mix64(base ^ 0x6a09e667f3bcc909)
	return r
}

// feistelF is the Feistel round function: 10 pseudo-random bits of (k, x).
func feistelF(k uint64, x uint32) uint32 {
	h := (k ^ uint64(x)) * 0xd6e8feb86659fd93
	h ^= h >> 32
	h *= 0x9e3779b97f4a7c15
	return uint32(h >> (64 - halfBits))
}

// bucketAt returns the bucket that has rank r in the replica's permutation
// (rank 0 is the bucket this replica wants most).
//
//go:norace
func (rp *replica) bucketAt(r uint32) uint32 {
	l, x := r>>halfBits, r&halfMask
	l, x = x, l^feistelF(rp.rk[0], x)
	l, x = x, l^feistelF(rp.rk[1], x)
	l, x = x, l^feistelF(rp.rk[2], x)
	l, x = x, l^feistelF(rp.rk[3], x)
	return l<<halfBits | x
}

// rankOf is the inverse of bucketAt: the rank of bucket b for this replica.
//
//go:norace
func (rp *replica) rankOf(b uint32) uint32 {
	l, x := b>>halfBits, b&halfMask
	l, x = x^feistelF(rp.rk[3], l), l
	l, x = x^feistelF(rp.rk[2], l), l
	l, x = x^feistelF(rp.rk[1], l), l
	l, x = x^feistelF(rp.rk[0], l), l
	return l<<halfBits | x
}

// tieBreak orders two replicas that give the same bucket the same rank.
func (rp *replica) tieBreak(b uint32) uint64 {
	return mix64(rp.tie ^ uint64(b))
}

// beats reports whether replica a beats replica b for a bucket at which both
// have the same rank. The order is total and depends only on the replicas'
// identities and the bucket, never on the set they are in.
//
//go:norace
func beats(a, b *replica, bucket uint32) bool {
	ta, tb := a.tieBreak(bucket), b.tieBreak(bucket)
	if ta != tb {
		return ta < tb
	}
	if a.idHash != b.idHash {
		return a.idHash < b.idHash
	}
	return a.j < b.j
}

// builder holds the scratch memory of one table build. It is created per
// rebuild and dropped afterwards, so idle pools hold no scratch.
//
// The build loops (build, fill, directBest, derive, bucketAt, rankOf,
// beats) are marked go:norace:
// they touch only the writer's private scratch and freshly allocated arrays
// that are published later by an atomic store, so the race detector has
// nothing to check there, and instrumenting their ~10^7 memory accesses per
// build made `go test -race` several times slower. Everything a reader
// touches (Pick, PickRR, Table, Snapshot) stays instrumented. Small pure
// helpers (mix64, feistelF, owners.get/set) are left unmarked so that they
// still inline into the marked loops under -race (a go:norace function is
// never inlined).
type builder struct {
	claimed  []uint64 // bitset: bucket decided by phase 1
	fresh    []uint64 // bitset: bucket claimed at the current level
	freshB   []uint32 // buckets set in fresh, to clear it cheaply
	claimRep []uint32 // per bucket: index of the claiming replica
	replicas []replica
	// phase2At is when the enumeration phase hands over to direct
	// evaluation: once unclaimed buckets * W <= phase2At. 0 means the
	// default, NumBuckets (equal work left either way); tests vary it to
	// prove both phases agree.
	phase2At uint64
}

// member is one target taking part in a consistent-hash lookup.
type member struct {
	idHash uint64
	weight int
	idx    uint16 // index of the target in its Table
}

// makeReplicas expands members into their replicas.
func (bd *builder) makeReplicas(members []member) []replica {
	bd.replicas = bd.replicas[:0]
	for _, m := range members {
		for j := 0; j < m.weight; j++ {
			bd.replicas = append(bd.replicas, newReplica(m.idHash, j, m.idx))
		}
	}
	return bd.replicas
}

// build fills own, for every bucket, with the member whose replica ranks the
// bucket lowest (ties broken by beats): weighted rendezvous hashing per
// bucket, where a target of weight w draws w independent uniform ranks and
// keeps the best, so it wins a bucket with probability w/W exactly.
//
// Phase 1 enumerates ranks level by level (rank 0 of every replica, then
// rank 1, ...); the first level at which a bucket is reached decides it,
// collisions within a level going to beats. Once the buckets still unclaimed
// are few (unclaimed*W <= NumBuckets by default), phase 2 evaluates them
// directly against every replica. Both phases compute the same function; the
// split only bounds the work near NumBuckets*(1+ln W) permutation steps.
//
// build returns an upper bound of the winning ranks (see lookup.maxRank).
//
//go:norace
func (bd *builder) build(members []member, own owners) (maxRank uint32) {
	reps := bd.makeReplicas(members)
	bd.claimed = make([]uint64, NumBuckets/64)
	bd.fresh = make([]uint64, NumBuckets/64)
	bd.claimRep = make([]uint32, NumBuckets)
	claimed, fresh, claimRep := bd.claimed[:NumBuckets/64], bd.fresh[:NumBuckets/64], bd.claimRep[:NumBuckets]
	switchAt := bd.phase2At
	if switchAt == 0 {
		switchAt = NumBuckets
	}
	w := uint64(len(reps))
	left := uint64(NumBuckets)
	var chunk [64]uint32
	level := uint32(0)
	for ; left*w > switchAt && level < NumBuckets; level++ {
		freshB := bd.freshB[:0]
		for base := 0; base < len(reps); base += len(chunk) {
			batch := reps[base:min(base+len(chunk), len(reps))]
			// Permute first, claim second: the permutations are independent
			// and pipeline well; the claims branch unpredictably.
			for k := range batch {
				chunk[k] = batch[k].bucketAt(level)
			}
			for k, b := range chunk[:len(batch)] {
				ri := base + k
				wi, bit := b>>6, uint64(1)<<(b&63)
				if claimed[wi]&bit == 0 {
					claimed[wi] |= bit
					fresh[wi] |= bit
					freshB = append(freshB, b)
					claimRep[b] = uint32(ri)
					left--
					continue
				}
				if fresh[wi]&bit != 0 && beats(&reps[ri], &reps[claimRep[b]], b) {
					claimRep[b] = uint32(ri)
				}
			}
		}
		for _, b := range freshB {
			fresh[b>>6] = 0
		}
		bd.freshB = freshB
	}
	if level > 0 {
		maxRank = level - 1 // every bucket claimed in phase 1 has a rank below level
	}
	for wi, word := range claimed {
		base := uint32(wi) << 6
		for k := uint32(0); k < 64; k++ {
			b := base + k
			if word&(1<<k) != 0 {
				own.set(b, reps[claimRep[b]].owner)
			} else {
				i, r := directBest(reps, b)
				own.set(b, reps[i].owner)
				maxRank = max(maxRank, r)
			}
		}
	}
	return maxRank
}

// fill completes own for the buckets listed in todo, by direct evaluation
// over reps, and returns the highest winning rank among them.
//
//go:norace
func (bd *builder) fill(reps []replica, own owners, todo []uint32) (maxRank uint32) {
	for _, b := range todo {
		i, r := directBest(reps, b)
		own.set(b, reps[i].owner)
		maxRank = max(maxRank, r)
	}
	return maxRank
}

// owners is a bucket -> target index array, one or two bytes wide.
type owners struct {
	own8  *[NumBuckets]uint8
	own16 *[NumBuckets]uint16
}

// newOwners allocates an array wide enough for n targets.
func newOwners(n int) owners {
	if n <= 1<<8 {
		return owners{own8: new([NumBuckets]uint8)}
	}
	return owners{own16: new([NumBuckets]uint16)}
}

func (o owners) set(b uint32, idx uint16) {
	if o.own8 != nil {
		o.own8[b] = uint8(idx)
		return
	}
	o.own16[b] = idx
}

func (o owners) get(b uint32) uint16 {
	if o.own8 != nil {
		return uint16(o.own8[b])
	}
	return o.own16[b]
}

func (o owners) valid() bool { return o.own8 != nil || o.own16 != nil }

// directBest returns the index of the replica that wins bucket b, by
// evaluating every replica, and its rank.
//
//go:norace
func directBest(reps []replica, b uint32) (int, uint32) {
	best, bestRank := 0, reps[0].rankOf(b)
	for i := 1; i < len(reps); i++ {
		r := reps[i].rankOf(b)
		if r < bestRank || (r == bestRank && beats(&reps[i], &reps[best], b)) {
			best, bestRank = i, r
		}
	}
	return best, bestRank
}

// bucketOf maps a key hash to its bucket.
func bucketOf(keyHash uint64) uint32 { return uint32(keyHash >> bucketShift) }
