package ratelimit

import "syscall"

// FileLimit raises the process's soft limit of open files to its hard limit
// (Go does so at start since 1.19; this makes sure and reads it) and returns
// it: the descriptors the collector's listeners, its database pool and its
// files share.
func FileLimit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	const most = 1 << 30 // RLIM_INFINITY, or near it
	return int(min(lim.Cur, most)), nil
}
