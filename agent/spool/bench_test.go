package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The benchmarks spool records the size of a serialized ProbeResult under
// a UUIDv7-sized id, in batches of 1 (one fsync per record, as the daemon
// spools each result) and of 100.
const benchPayloadLen = 256

var benchBatches = []int{1, 100}

func benchID(n int) string {
	return fmt.Sprintf("0190e0a4-7c2e-7000-8000-%012d", n)
}

// BenchmarkAppend measures durable appends.
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, benchPayloadLen)
	for _, size := range benchBatches {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{MaxBytes: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]Record, size)
			n := 0
			for b.Loop() {
				for i := range batch {
					batch[i] = Record{ID: benchID(n), Payload: payload}
					n++
				}
				if err := s.AppendBatch(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkRawWriteFsync is the limit for BenchmarkAppend: the same frames
// written to a plain file with one Write and one Sync per batch.
func BenchmarkRawWriteFsync(b *testing.B) {
	payload := make([]byte, benchPayloadLen)
	for _, size := range benchBatches {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			// Framed once, outside the loop: the limit is the kernel's.
			var buf []byte
			for i := range size {
				buf = appendFrame(buf, benchID(i), payload)
			}
			n := 0
			for b.Loop() {
				n += size
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
