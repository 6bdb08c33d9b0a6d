package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The ban list can outlive a restart (bans.state_file): Run saves it every
// stateEvery when it changed, SaveBans at shutdown, and RestoreBans at
// start puts back the bans whose expiry has not passed, with their origin,
// reason and time added. The file holds what GET /api/v1/bans shows.

// stateEvery is how often Run saves a changed ban list.
const stateEvery = 10 * time.Second

// save writes the bans in force to path, through a temporary file renamed
// over it, so that a crash leaves the old list or the new one.
func (b *Bans) save(path string) error {
	data, err := json.MarshalIndent(b.List(), "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// restore adds the bans of the file at path whose expiry is after now,
// up to bans.max, and returns how many; a missing file is an empty list.
// They are not counted as added.
func (b *Bans) restore(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var saved []Ban
	if err := json.Unmarshal(data, &saved); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	wall, now := time.Now(), b.clock.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i, s := range saved {
		p, err := netip.ParsePrefix(s.Prefix)
		o, known := originOf(s.Origin)
		if err != nil || !known {
			return n, fmt.Errorf("%s: ban %d: prefix %q, origin %q", path, i, s.Prefix, s.Origin)
		}
		left := s.Expires.Sub(wall)
		if left <= 0 || int64(len(b.recs)) >= b.max.Load() {
			continue
		}
		added := now - int64(wall.Sub(s.Added))
		b.putLocked(banKey(p), banRecord{ban: ban{expires: now + int64(left), origin: o}, added: added, reason: s.Reason})
		n++
	}
	return n, nil
}

// originOf returns the Origin named name.
func originOf(name string) (Origin, bool) {
	for o, n := range originNames {
		if n == name {
			return Origin(o), true
		}
	}
	return 0, false
}

// RestoreBans puts back the bans saved in bans.state_file (none when it
// is not set) and returns how many.
func (g *Guard) RestoreBans() (int, error) {
	path := g.stateFile()
	if path == "" {
		return 0, nil
	}
	n, err := g.bans.restore(path)
	g.savedVersion.Store(g.bans.version.Load())
	if err != nil {
		return n, fmt.Errorf("edge.bans.state_file: %w", err)
	}
	return n, nil
}

// SaveBans writes the ban list to bans.state_file if it changed since it
// was last saved or restored (nothing when the key is not set).
func (g *Guard) SaveBans() error {
	path := g.stateFile()
	v := g.bans.version.Load()
	if path == "" || v == g.savedVersion.Load() {
		return nil
	}
	if err := g.bans.save(path); err != nil {
		return fmt.Errorf("edge.bans.state_file: %w", err)
	}
	g.savedVersion.Store(v)
	return nil
}

// stateFile returns bans.state_file as in force.
func (g *Guard) stateFile() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.prepared.cfg.Bans.StateFile
}
