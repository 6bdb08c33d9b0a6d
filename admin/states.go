package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
)

// StateFile keeps the upstreams' admin states (draining, disabled) in a
// file, so that they survive a restart: the Handler saves them after every
// change it makes (Options.StateFile), and the program applies Load's
// entries to its targets when it starts. The file is JSON:
//
//	{
//	  "upstreams": {
//	    "udp:10.0.0.1:5060": {"admin": "draining", "since": "2026-12-03T09:00:00Z"},
//	    "sbc-b": {"admin": "disabled", "since": "2026-12-03T09:05:00Z"}
//	  }
//	}
//
// with one entry per upstream, by ID, that is not enabled (an upstream
// without an entry is enabled). Every save replaces the file atomically
// (a temporary file in the same directory, fsync, rename, fsync of the
// directory), mode 0600, so a crash leaves the old file or the new one,
// never a mix; it lists the targets of the running configuration only, so
// the entry of an upstream that no longer exists is dropped at the next
// save. A StateFile is safe for concurrent use.
type StateFile struct {
	path string
	mu   sync.Mutex // serializes a change with the save that records it
}

// SavedState is one upstream's entry in the state file.
type SavedState struct {
	// Admin is the admin state ("draining" or "disabled" in the file).
	Admin balancer.AdminState `json:"-"`
	// Since is when the state was set (for the operator; Load's caller
	// sets the state anew).
	Since time.Time `json:"since,omitzero"`
}

// savedJSON is SavedState as written.
type savedJSON struct {
	Admin string    `json:"admin"`
	Since time.Time `json:"since,omitzero"`
}

// stateDoc is the file's document.
type stateDoc struct {
	Upstreams map[string]savedJSON `json:"upstreams"`
}

// NewStateFile returns the StateFile at path. It does not touch the file.
func NewStateFile(path string) *StateFile { return &StateFile{path: path} }

// Path returns the file's path.
func (f *StateFile) Path() string { return f.path }

// CheckStateFile validates a state file setting: path's directory must
// exist (the file itself need not). It returns a plain error (the caller
// names the field).
func CheckStateFile(path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory of %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// Load reads the saved states by upstream ID. A missing file is no error:
// nothing was saved yet. A file that does not parse, or names an unknown
// state, is an error naming the file.
func (f *StateFile) Load() (map[string]SavedState, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]SavedState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("admin: state file: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("admin: state file %s: %w", f.path, err)
	}
	out := make(map[string]SavedState, len(doc.Upstreams))
	for id, s := range doc.Upstreams {
		a, err := balancer.ParseAdminState(s.Admin)
		if err != nil {
			return nil, fmt.Errorf("admin: state file %s: upstream %q: %w", f.path, id, err)
		}
		out[id] = SavedState{Admin: a, Since: s.Since}
	}
	return out, nil
}

// Change runs set (an admin state change) and then saves the states that
// states returns, as one step: concurrent changes are saved in the order
// they were made. It returns set's error (nothing is saved then), or the
// save's, wrapped in a *SaveError.
func (f *StateFile) Change(set func() error, states func() map[string]SavedState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := set(); err != nil {
		return err
	}
	if err := f.save(states()); err != nil {
		return &SaveError{Path: f.path, Err: err}
	}
	return nil
}

// SaveError reports an admin state change that was made but could not be
// saved: it is in force until the process stops, and lost then.
type SaveError struct {
	Path string
	Err  error
}

func (e *SaveError) Error() string {
	return fmt.Sprintf("the change is in force but was not saved to %s (it will not survive a restart): %v", e.Path, e.Err)
}

func (e *SaveError) Unwrap() error { return e.Err }

// save writes states (enabled ones left out) to the file atomically.
func (f *StateFile) save(states map[string]SavedState) error {
	doc := stateDoc{Upstreams: map[string]savedJSON{}}
	for id, s := range states {
		if s.Admin != balancer.Enabled {
			doc.Upstreams[id] = savedJSON{Admin: s.Admin.String(), Since: s.Since.UTC()}
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(f.path, append(b, '\n'))
}

// writeAtomic replaces path with b: a temporary file (mode 0600) in the
// same directory, synced, renamed over path, and the directory synced.
func writeAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SortedIDs returns the IDs of states in order, for logs.
func SortedIDs(states map[string]SavedState) []string {
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
