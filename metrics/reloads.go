package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// Reloads records the configuration loads of the process for the
// viaduct_config_* metrics. The zero value is ready to use and all methods
// are safe for concurrent use. The code that loads the configuration calls:
//
//	r.Loaded(metrics.ConfigHash(file))      // once, for the configuration the process starts with
//	r.IncSuccess(metrics.ConfigHash(file))  // a reload applied (SIGHUP, POST /api/v1/reload)
//	r.IncFailure()                          // a reload refused: the running configuration stays
type Reloads struct {
	mu          sync.Mutex
	success     uint64
	failure     uint64
	lastFailed  bool
	lastSuccess time.Time
	hash        string
	now         func() time.Time // nil: time.Now
}

// ReloadStats is a snapshot of a Reloads.
type ReloadStats struct {
	// Success and Failure count the reloads applied and refused (the
	// initial load is not a reload).
	Success, Failure uint64
	// LastFailed reports whether the most recent load attempt failed.
	LastFailed bool
	// LastSuccess is when the configuration in use was loaded (zero
	// before Loaded or IncSuccess).
	LastSuccess time.Time
	// Hash identifies the configuration in use (see ConfigHash), empty
	// until Loaded or IncSuccess.
	Hash string
}

// ConfigHash returns the identity of a configuration file's contents for
// the viaduct_config_info metric: the first 16 hex digits of its SHA-256,
// the same as `sha256sum viaduct.yaml | cut -c1-16` prints, so an operator
// can tell which file every instance runs.
func ConfigHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Loaded records the configuration the process started with. It is not
// counted as a reload.
func (r *Reloads) Loaded(hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hash = hash
	r.lastFailed = false
	r.lastSuccess = r.clock()
}

// IncSuccess records a reload that was applied; hash identifies the
// configuration now in use.
func (r *Reloads) IncSuccess(hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.success++
	r.hash = hash
	r.lastFailed = false
	r.lastSuccess = r.clock()
}

// IncFailure records a reload that was refused: the running configuration,
// and its hash, stay.
func (r *Reloads) IncFailure() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failure++
	r.lastFailed = true
}

// Snapshot returns the current counts and hash.
func (r *Reloads) Snapshot() ReloadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ReloadStats{
		Success:     r.success,
		Failure:     r.failure,
		LastFailed:  r.lastFailed,
		LastSuccess: r.lastSuccess,
		Hash:        r.hash,
	}
}

func (r *Reloads) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}
