//go:build !linux

package threadguard

import "time"

// threadCPUTime reports false: a thread's own CPU time is read on Linux only.
func threadCPUTime() (time.Duration, bool) { return 0, false }
