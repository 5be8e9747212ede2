package api

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

func TestCodecMakesTextValid(t *testing.T) {
	in := &op25bv1.EnrollRequest{Token: "tok", Label: "label-XX-end", PublicKey: []byte("XX stays bytes")}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("XX"), []byte("\xff\xfe"))
	var got op25bv1.EnrollRequest
	if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if got.Label != "label-\uFFFD-end" || got.Token != "tok" || string(got.PublicKey) != "\xff\xfe stays bytes" {
		t.Errorf("Unmarshal = label %q, token %q, key %q; want the label's invalid bytes replaced, bytes fields as sent", got.Label, got.Token, got.PublicKey)
	}
	// A malformed message stays refused.
	if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:len(b)-3])}, &got); err == nil {
		t.Error("Unmarshal of a truncated message succeeded")
	}
}
