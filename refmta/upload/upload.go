// Package upload delivers the reference MTA's sightings to the collector:
// batches from the bounded queue (refmta/sighting) over a streaming RPC,
// each removed from the queue only once the collector acknowledged it
// after storing it. Failures back off with jitter; a refused credential
// stops the uploader with a clear error, as retrying cannot help.
package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/op25b/observatory/internal/collectorclient"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/sighting"
)

// Uploader sends sightings to the collector.
type Uploader struct {
	Conn     *grpc.ClientConn
	Identity collectorclient.Identity
	Queue    *sighting.Queue
	Log      *slog.Logger
	// Batch is the most sightings per message (default 500); Idle how long
	// to wait when the queue is empty (default 1s).
	Batch int
	Idle  time.Duration
}

// Run uploads until ctx is done; it returns an error only when the
// collector refuses the credential.
func (u *Uploader) Run(ctx context.Context) error {
	if u.Batch == 0 {
		u.Batch = 500
	}
	if u.Idle == 0 {
		u.Idle = time.Second
	}
	b := collectorclient.Backoff{Min: time.Second, Max: 2 * time.Minute}
	for ctx.Err() == nil {
		err := u.session(ctx, &b)
		if ctx.Err() != nil {
			return nil
		}
		if collectorclient.Permanent(err) {
			return fmt.Errorf("upload: the collector refused this reference MTA: %w", err)
		}
		u.Log.Warn("sighting upload interrupted; retrying", "err", err, "queued", u.Queue.Len())
		if b.Sleep(ctx) != nil {
			return nil
		}
	}
	return nil
}

// session runs one stream until it fails.
func (u *Uploader) session(ctx context.Context, b *collectorclient.Backoff) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := op25bv1.NewRefMTAServiceClient(u.Conn).UploadSightings(sctx, u.Identity.CallOption())
	if err != nil {
		return err
	}
	var batch uint64
	for {
		pending := u.Queue.Peek(u.Batch)
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				stream.CloseSend()
				return ctx.Err()
			case <-time.After(u.Idle):
				continue
			}
		}
		batch++
		req := &op25bv1.UploadSightingsRequest{BatchId: batch, Dropped: u.Queue.Dropped()}
		for _, s := range pending {
			req.Sightings = append(req.Sightings, Proto(s))
		}
		if err := stream.Send(req); err != nil {
			_, rerr := stream.Recv() // the status explains a failed Send
			return errors.Join(err, rerr)
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		acked := make(map[string]bool, len(resp.AckedSightingIds))
		for _, id := range resp.AckedSightingIds {
			acked[id] = true
		}
		u.Queue.Remove(acked)
		b.Reset()
	}
}

// Proto is a sighting as the wire carries it.
func Proto(s sighting.Sighting) *op25bv1.Sighting {
	fam := op25bv1.AddressFamily_ADDRESS_FAMILY_IPV6
	if s.Source.Unmap().Is4() {
		fam = op25bv1.AddressFamily_ADDRESS_FAMILY_IPV4
	}
	return &op25bv1.Sighting{SightingId: s.ID, Nonce: s.Nonce, ObservedSource: s.Source.String(), Port: uint32(s.Port),
		Family: fam, SeenAt: timestamppb.New(s.Time), Tls: s.TLS}
}
