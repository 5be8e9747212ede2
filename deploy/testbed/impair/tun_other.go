//go:build !linux

package impair

import (
	"context"
	"errors"
	"os"
)

// OpenPair needs Linux TUN devices; elsewhere the package compiles (the
// shaping logic and its tests run) but makes no devices.
func OpenPair(context.Context, string, string, string) (*os.File, *os.File, error) {
	return nil, nil, errors.New("impair: TUN devices need Linux")
}
