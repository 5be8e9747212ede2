package impair

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// OpenPair creates two TUN devices (IP packets, no link layer, no packet
// information header): name in the caller's network namespace, and one
// moved into the namespace peerNetns (as `ip netns` names it) and named
// peerName there. The devices exist as long as their files are open;
// moving a device keeps its file attached. Both start down, without
// addresses: configuring them is the caller's business.
func OpenPair(ctx context.Context, name, peerNetns, peerName string) (local, peer *os.File, err error) {
	local, err = openTUN(name)
	if err != nil {
		return nil, nil, err
	}
	// A name free in this namespace until the device moves.
	var b [4]byte
	_, _ = rand.Read(b[:])
	tmp := "o25t" + hex.EncodeToString(b[:])
	if peer, err = openTUN(tmp); err != nil {
		local.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "link", "set", "dev", tmp, "netns", peerNetns, "name", peerName)
	if out, err := cmd.CombinedOutput(); err != nil {
		local.Close()
		peer.Close()
		return nil, nil, fmt.Errorf("impair: moving the TUN device into %s: %s: %w: %s",
			peerNetns, cmd.Args, err, bytes.TrimSpace(out))
	}
	return local, peer, nil
}

// openTUN creates the TUN device name. The file is made pollable only
// after TUNSETIFF (a detached TUN file polls as an error, which the
// runtime would remember), so reads wait in the runtime's poller and
// Close interrupts them.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("impair: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			err = fmt.Errorf("TUNSETIFF: %w", err)
		}
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("impair: TUN device %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
