package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/auth"
	"github.com/op25b/observatory/collector/collectortest"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// TestEnrollJapaneseLabel: a label of 43 Japanese characters (129 bytes)
// is cut to the 128 bytes a label may have between two characters, and
// the agent enrolls.
func TestEnrollJapaneseLabel(t *testing.T) {
	e := start(t, api.Options{})
	ctx := context.Background()
	_, secret, err := e.auth.CreateToken(ctx, "test", auth.Agent, time.Now().Add(time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	label := strings.Repeat("観測", 21) + "所"
	software := strings.Repeat("版", 22) // 66 bytes, 64 allowed
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	resp, err := op25bv1.NewEnrollmentServiceClient(e.conn).Enroll(ctx, &op25bv1.EnrollRequest{Token: secret,
		Kind: op25bv1.PrincipalKind_PRINCIPAL_KIND_AGENT, PublicKey: pub, Label: label, SoftwareVersion: software})
	if err != nil {
		t.Fatalf("Enroll with a label of %d characters, %d bytes: %v", utf8.RuneCountInString(label), len(label), err)
	}
	var gotLabel, gotSoftware string
	if err := e.store.Pool.QueryRow(ctx, "SELECT label, software FROM principals WHERE principal_id = $1", resp.PrincipalId).
		Scan(&gotLabel, &gotSoftware); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("観測", 21); gotLabel != want {
		t.Errorf("stored label %q; want the first 42 characters %q", gotLabel, want)
	}
	if want := strings.Repeat("版", 21); gotSoftware != want {
		t.Errorf("stored software %q; want %q", gotSoftware, want)
	}
}

// TestUploadBadTextStoredOrRejectedAlone: a batch whose results carry
// text cut inside a character by the collector's bounds, a NUL, bytes that
// are not UTF-8 at all (sent as raw protobuf, as a client in another
// language could) or an over-long reference MTA id is answered result by
// result: the text is made valid and stored, the unusable result is
// rejected with a reason, and the good results of the batch are stored.
func TestUploadBadTextStoredOrRejectedAlone(t *testing.T) {
	e := start(t, api.Options{})
	ctx, _ := e.enroll(t)
	rs := batch(6)
	rs[0].Detail = "x" + strings.Repeat("日", 400)         // cut at 1024 bytes, inside a character
	rs[1].Failure = "timeout\x00and then some"            // NUL
	rs[2].Detail = "mark-not-utf8-mark"                   // replaced by invalid bytes on the wire
	rs[3].RoundId = strings.Repeat("ラウンド", 6)             // 72 bytes, cut at 64 inside a character
	rs[4].RefmtaId = "refmta-" + strings.Repeat("z", 100) // not an id
	msg, err := proto.Marshal(&op25bv1.UploadResultsRequest{BatchId: 1, Results: rs})
	if err != nil {
		t.Fatal(err)
	}
	// Same length, so the wire format stays well formed.
	msg = bytes.Replace(msg, []byte("not-utf8"), []byte("\xe6\x97\xff\xfe\xc0\xaf\x80\x80"), 1)

	stream, err := op25bv1.NewAgentServiceClient(e.conn).UploadResults(ctx, grpc.ForceCodecV2(collectortest.RawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(collectortest.RawMessage(msg)); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	stream.CloseSend()
	if err != nil {
		t.Fatalf("upload: %v; want the batch answered result by result", err)
	}
	if len(resp.AckedResultIds) != 5 || len(resp.Rejections) != 1 || resp.Rejections[0].ResultId != rs[4].ResultId ||
		!strings.Contains(resp.Rejections[0].Reason, "refmta_id") {
		t.Fatalf("acked %d, rejected %v; want 5 acked and the long refmta_id rejected", len(resp.AckedResultIds), resp.Rejections)
	}
	stored := map[string][3]string{}
	rows, err := e.store.Pool.Query(ctx, "SELECT result_id::text, failure, detail, round_id FROM results")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, failure, detail, round string
		if err := rows.Scan(&id, &failure, &detail, &round); err != nil {
			t.Fatal(err)
		}
		stored[id] = [3]string{failure, detail, round}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(stored) != 5 {
		t.Fatalf("%d results stored; want 5", len(stored))
	}
	for _, want := range []struct {
		i                      int
		failure, detail, round string
	}{
		{0, "", "x" + strings.Repeat("日", 341), ""},
		{1, "timeout\uFFFDand then some", "", ""},
		{2, "", "mark-\uFFFD-mark", ""},
		{3, "", "", strings.Repeat("ラウンド", 5) + "ラ"},
		{5, "", "", ""},
	} {
		got, ok := stored[rs[want.i].ResultId]
		if !ok {
			t.Errorf("result %d not stored", want.i)
			continue
		}
		if got != [3]string{want.failure, want.detail, want.round} {
			t.Errorf("result %d stored as failure %q, detail %q, round %q; want %q, %q, %q",
				want.i, got[0], got[1], got[2], want.failure, want.detail, want.round)
		}
	}
}
