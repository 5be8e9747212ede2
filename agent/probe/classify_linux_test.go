package probe

import (
	"syscall"
	"testing"
)

func TestClassifyDialLinux(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EACCES, FailureAdminProhibited},
		{syscall.EPERM, FailureLocalFirewall},
	} {
		if got := classifyDial(dialErr(tc.errno)); got != tc.want {
			t.Errorf("classifyDial(%v) = %q; want %q", tc.errno, got, tc.want)
		}
	}
}
