package collectortest

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// RawMessage is a gRPC message already in wire format.
type RawMessage []byte

// RawCodec sends a RawMessage as it is and everything else as protobuf,
// for clients that send bytes no protobuf encoder would make, or that
// encoded their messages before a benchmark's timed loop. Use it with
// grpc.ForceCodecV2.
type RawCodec struct{}

func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(RawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (RawCodec) Name() string { return "proto" }
