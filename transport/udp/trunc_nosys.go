//go:build !unix && !windows

package udp

// readTruncated reports false: these systems (js, wasip1, plan9) report no
// truncation, so a datagram longer than its slot arrives cut short but
// unmarked.
func readTruncated(flags int, err error) bool { return false }
