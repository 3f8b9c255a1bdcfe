//go:build unix

package eastwest

import (
	"math"
	"syscall"
)

// openFileLimit is the process's soft RLIMIT_NOFILE (which Go raises to the hard
// limit at start).
func openFileLimit() (int, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 0, false
	}
	return int(min(uint64(r.Cur), math.MaxInt32)), true //nolint:unconvert // Cur is int64 on some systems
}
