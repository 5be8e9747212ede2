//go:build !linux

package testbed

import (
	"errors"
	"os"
	"syscall"
)

// The testbed is made of Linux network namespaces; elsewhere it compiles
// (so that `go vet ./...` works on any workstation) but does not run.
var errNotLinux = errors.New("testbed: needs Linux (network namespaces, nftables)")

func childAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, syscall.Signal) error { return errNotLinux }

func killProcess(int) error { return errNotLinux }

func tryLock(*os.File) error { return errNotLinux }
