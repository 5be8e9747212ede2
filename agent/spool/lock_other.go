//go:build !linux

package spool

// lockDir does nothing: the agent's daemon runs on Linux, and elsewhere
// the operator must not point two agents at one directory.
func lockDir(string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
