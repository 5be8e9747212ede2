package stream

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// ParseFilter checks the filters of a request as the HTTP and gRPC front
// ends take them; errors wrap dataset.ErrInvalid.
func ParseFilter(asn uint32, country string, port uint32, verdicts []pb.Verdict) (Filter, error) {
	cc, err := dataset.ParseCountry(country)
	if err != nil {
		return Filter{}, err
	}
	switch port {
	case 0, 25, 465, 587:
	default:
		return Filter{}, fmt.Errorf("%w: port %d: want 25, 465 or 587", dataset.ErrInvalid, port)
	}
	return Filter{ASN: asn, Country: cc, Port: port, Verdicts: verdicts}, nil
}

// Serve is DatasetService/Stream: the events req selects until the caller
// cancels, ending with RESOURCE_EXHAUSTED when it is dropped as too slow
// or the broker is full.
func (b *Broker) Serve(req *pb.StreamRequest, srv grpc.ServerStreamingServer[pb.StreamResponse]) error {
	f, err := ParseFilter(req.GetAsn(), req.GetCountry(), req.GetPort(), req.GetVerdicts())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	sub, err := b.Subscribe(f, req.GetLastEventId())
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer sub.Close()
	for _, e := range sub.Backlog {
		if err := srv.Send(e.Msg); err != nil {
			return err
		}
	}
	sub.Sent(len(sub.Backlog))
	ctx := srv.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case e, ok := <-sub.C():
			if !ok {
				return status.Error(codes.ResourceExhausted, "stream: dropped: "+sub.Reason())
			}
			if err := srv.Send(e.Msg); err != nil {
				return err
			}
			sub.Sent(1)
		}
	}
}
