package kubernetes

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Render builds the kustomization in dir of fsys, as `kubectl kustomize
// dir` does, and returns its objects as YAML documents, one per object.
func Render(fsys filesys.FileSystem, dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	docs := make([][]byte, 0, rm.Size())
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		docs = append(docs, y)
	}
	return docs, nil
}

// LoadTree copies the regular files under the directory root of the disk
// into an in-memory file system, at the same paths; extra adds (or
// replaces) files by path. Rendering from it leaves the disk alone and
// lets a test supply files an operator creates (the secrets).
func LoadTree(root string, extra map[string][]byte) (filesys.FileSystem, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(p, b)
	})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", root, err)
	}
	for p, b := range extra {
		if err := mem.WriteFile(p, b); err != nil {
			return nil, fmt.Errorf("adding %s: %w", p, err)
		}
	}
	return mem, nil
}
