package testbed

import (
	"os"
	"syscall"
)

// childAttr puts a child in its own process group, so that it and anything
// it starts can be killed together, and has the kernel kill it if the
// testbed dies without cleaning up (SIGKILL, a crash).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// killProcess kills one process (a leftover found inside a namespace).
func killProcess(pid int) error {
	return syscall.Kill(pid, syscall.SIGKILL)
}

// tryLock takes an exclusive flock on f without waiting; it fails with
// EWOULDBLOCK when another process holds it.
func tryLock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
