//go:build !unix && !windows

package spool

// lockDir does nothing: on platforms other than Unix and Windows
// the operator must not point two agents at one directory.
func lockDir(string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
