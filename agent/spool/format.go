package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The frame and ack-entry layouts are described in the package doc; these
// constants are the only place their sizes are spelled out.
const (
	frameHeaderLen = 8 // body length, checksum
	idLenLen       = 2
	minFrameLen    = frameHeaderLen + idLenLen
	// maxBodyLen bounds one record. It is a constant rather than derived
	// from Options so that a length read from disk can be called impossible
	// whatever the options of the process that wrote it.
	maxBodyLen = 16 << 20
	maxIDLen   = 1<<16 - 1

	ackEntryLen = 12 // frame offset, checksum

	segExt = ".seg"
	ackExt = ".ack"
	// seqDigits fixes the width of file names so that they sort by number.
	seqDigits = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameLen is the size on disk of the frame holding id and payload.
func frameLen(id string, payload []byte) int64 {
	return int64(minFrameLen + len(id) + len(payload))
}

// appendFrame appends the frame of one record to b.
func appendFrame(b []byte, id string, payload []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(idLenLen+len(id)+len(payload)))
	b = append(b, 0, 0, 0, 0) // checksum, known once the body is in place
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[start+4:], frameChecksum(b[start:start+4], b[start+frameHeaderLen:]))
	return b
}

// frameChecksum covers the length field as well as the body, so that a
// damaged length that still points inside the file is caught too.
func frameChecksum(length, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, body)
}

// decodeFrame checks one whole frame read back from disk and splits it.
// The payload aliases frame.
func decodeFrame(frame []byte) (id string, payload []byte, err error) {
	if len(frame) < minFrameLen {
		return "", nil, errors.New("short frame")
	}
	n := binary.BigEndian.Uint32(frame)
	body := frame[frameHeaderLen:]
	if int64(n) != int64(len(body)) {
		return "", nil, fmt.Errorf("length %d, want %d", n, len(body))
	}
	if frameChecksum(frame[:4], body) != binary.BigEndian.Uint32(frame[4:]) {
		return "", nil, errors.New("checksum mismatch")
	}
	idLen := int(binary.BigEndian.Uint16(body))
	if idLen > len(body)-idLenLen {
		return "", nil, fmt.Errorf("impossible id length %d", idLen)
	}
	return string(body[idLenLen : idLenLen+idLen]), body[idLenLen+idLen:], nil
}

// frameInfo locates one intact frame found by scan.
type frameInfo struct {
	off, size int64
	id        string
}

// scan reads the frames of a segment of size bytes from r, calls visit for
// each intact one, and stops at the first damaged frame: end is where the
// intact frames end, damage says what was wrong after them ("" if
// nothing). err is an I/O error from r; no content of r makes scan fail or
// allocate more than one id.
func scan(r io.Reader, size int64, visit func(frameInfo)) (end int64, damage string, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [minFrameLen]byte
	var id []byte
	for end < size {
		if size-end < minFrameLen {
			return end, fmt.Sprintf("torn frame: %d bytes, shorter than a header", size-end), nil
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return end, "", readErr(err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:]))
		sum := binary.BigEndian.Uint32(hdr[4:])
		idLen := int64(binary.BigEndian.Uint16(hdr[8:]))
		switch {
		case n < idLenLen || n > maxBodyLen:
			return end, fmt.Sprintf("impossible length %d", n), nil
		case frameHeaderLen+n > size-end:
			return end, fmt.Sprintf("torn frame: length %d, %d bytes left", n, size-end-frameHeaderLen), nil
		case idLen > n-idLenLen:
			return end, fmt.Sprintf("impossible id length %d in a body of %d", idLen, n), nil
		}
		id = slices.Grow(id[:0], int(idLen))[:idLen]
		if _, err := io.ReadFull(br, id); err != nil {
			return end, "", readErr(err)
		}
		crc := crc32.Update(crc32.Checksum(hdr[:4], castagnoli), castagnoli, hdr[8:])
		crc = crc32.Update(crc, castagnoli, id)
		// The payload is only checksummed, through the reader's own buffer:
		// opening a spool costs memory per record, not per byte.
		for rest := n - idLenLen - idLen; rest > 0; {
			p, err := br.Peek(int(min(rest, int64(br.Size()))))
			if err != nil {
				return end, "", readErr(err)
			}
			crc = crc32.Update(crc, castagnoli, p)
			_, _ = br.Discard(len(p)) // cannot fail: p is buffered
			rest -= int64(len(p))
		}
		if crc != sum {
			return end, "checksum mismatch", nil
		}
		visit(frameInfo{off: end, size: frameHeaderLen + n, id: string(id)})
		end += frameHeaderLen + n
	}
	return end, "", nil
}

// readErr reports a file that ended before the size it was stat'ed with:
// that is another process at work, not damage to truncate.
func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendAck appends the ack entry of the frame at off to b.
func appendAck(b []byte, off int64) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseAcks returns the frame offsets acknowledged in an ack log, the
// length of its whole entries (a torn last entry is not whole), and how
// many whole entries failed their checksum. Entries have a fixed size, so
// a damaged one costs only itself.
func parseAcks(b []byte) (acked map[int64]bool, whole int64, bad int) {
	acked = make(map[int64]bool, len(b)/ackEntryLen)
	for len(b) >= ackEntryLen {
		e := b[:ackEntryLen]
		b = b[ackEntryLen:]
		whole += ackEntryLen
		if crc32.Checksum(e[:8], castagnoli) != binary.BigEndian.Uint32(e[8:]) {
			bad++
			continue
		}
		acked[int64(binary.BigEndian.Uint64(e))] = true
	}
	return acked, whole, bad
}

// fileName is the name of the segment or ack log numbered seq.
func fileName(seq uint64, ext string) string {
	return fmt.Sprintf("%0*d%s", seqDigits, seq, ext)
}

// parseFileName is the inverse of fileName; anything else in the directory
// is not the spool's and is left alone.
func parseFileName(name string) (seq uint64, ext string, ok bool) {
	for _, ext := range []string{segExt, ackExt} {
		digits, found := strings.CutSuffix(name, ext)
		if !found || len(digits) != seqDigits {
			continue
		}
		seq, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			return 0, "", false
		}
		return seq, ext, true
	}
	return 0, "", false
}
