//go:build !linux

package ratelimit

import "errors"

// FileLimit is known on Linux only.
func FileLimit() (int, error) {
	return 0, errors.New("ratelimit: the limit of open files is read on Linux only")
}
