package api

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// codec is the gRPC server's protobuf codec. Go's protobuf refuses a
// whole message when one string field in it is not UTF-8, so one such
// result from a client in another language would fail its batch at every
// retry and hold back all that follows it in the client's queue. This
// codec replaces the invalid bytes with U+FFFD and decodes again, as the
// collector makes valid any text it stores (internal/clip).
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := encoding.GetCodecV2("proto").Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	fixed, changed := validUTF8(data.Materialize(), m.ProtoReflect().Descriptor())
	if !changed {
		return err
	}
	return proto.Unmarshal(fixed, m)
}

// validUTF8 returns the wire-format message b of type md with every
// string field, nested ones included, made valid UTF-8, and whether it
// changed any. Malformed input is returned unchanged, for proto.Unmarshal
// to refuse.
func validUTF8(b []byte, md protoreflect.MessageDescriptor) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	changed := false
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return b, false
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return b, false
		}
		field, value := rest[:n+m], rest[n:n+m]
		rest = rest[n+m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(value)
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			v, changed = []byte(strings.ToValidUTF8(string(v), "\uFFFD")), true
		case fd.Kind() == protoreflect.MessageKind:
			var c bool
			if v, c = validUTF8(v, fd.Message()); c {
				changed = true
			}
		}
		out = protowire.AppendTag(out, num, typ)
		out = protowire.AppendBytes(out, v)
	}
	return out, changed
}
