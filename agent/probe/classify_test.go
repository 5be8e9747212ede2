package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyDial(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dialErr(eRefused), FailureConnectionRefused},
		{dialErr(eReset), FailureConnectionReset},
		{dialErr(eHostUnreachable), FailureHostUnreachable},
		{dialErr(eNetUnreachable), FailureNetworkUnreachable},
		{dialErr(eTimedOut), FailureTimeout},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, FailureTimeout},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), FailureTimeout},
		{&net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, FailureTimeout},
		{dialErr(eUnmapped), FailureDialError},
		{errors.New("something else"), FailureDialError},
	} {
		if got := classifyDial(tc.err); got != tc.want {
			t.Errorf("classifyDial(%q) = %q; want %q", tc.err, got, tc.want)
		}
	}
}

func TestClassifyDialog(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("banner: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), FailureDeadline},
		{fmt.Errorf("banner: %w", io.EOF), FailureConnectionLost},
		{fmt.Errorf("TLS handshake: %w", io.ErrUnexpectedEOF), FailureConnectionLost},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", eReset)}, FailureConnectionLost},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errnos.lost[len(errnos.lost)-1])}, FailureConnectionLost},
		{fmt.Errorf("banner: %w", errors.New("malformed reply")), FailureProtocolError},
		{fmt.Errorf("TLS handshake: %w", tls.AlertError(40)), FailureProtocolError},
		{errInjected, FailureProtocolError},
	} {
		if got := classifyDialog(tc.err); got != tc.want {
			t.Errorf("classifyDialog(%q) = %q; want %q", tc.err, got, tc.want)
		}
	}
}

func TestDescribeLeavesOutAddresses(t *testing.T) {
	err := fmt.Errorf("banner: %w", &net.OpError{Op: "read", Net: "tcp",
		Source: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000},
		Addr:   &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25}, Err: eReset})
	got := describe(err)
	if strings.Contains(got, "198.51.100.7") || strings.Contains(got, "192.0.2.25") || !strings.Contains(got, "banner: ") {
		t.Errorf("describe(%q) = %q; want the error without addresses", err, got)
	}
}
