//go:build !amd64 || purego

package parser

// stopMask is stopMaskGeneric on platforms without an assembly version
// (and under the purego build tag).
func stopMask(b []byte, from int, dst *[stopWindow]uint64) int {
	return stopMaskGeneric(b, from, dst)
}
