//go:build !linux

package chaos

import (
	"context"
	"errors"
)

var errLinux = errors.New("chaos: needs Linux (network namespaces, tmpfs, inotify)")

// Run needs Linux.
func Run(context.Context, Config) (*Report, error) { return nil, errLinux }

// Sweep needs Linux.
func Sweep(context.Context) error { return errLinux }
