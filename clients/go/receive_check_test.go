package filestorage

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The daemon checks its own bytes, so a corrupt download cannot be provoked
// through it: these drive the client's check directly.
func TestReceiveCheckFindsWrongBytesAndCounts(t *testing.T) {
	data := []byte("the original bytes")
	info := &Info{Key: "k", Size: int64(len(data)), CRC32C: CRC32C(data)}

	ok := newReceiveCheck(info, 0, 0)
	if err := ok.add(data[:5]); err != nil {
		t.Fatal(err)
	}
	if err := ok.add(data[5:]); err != nil {
		t.Fatal(err)
	}
	if err := ok.finish(); err != nil {
		t.Errorf("the right bytes failed the check: %v", err)
	}

	flipped := append([]byte{}, data...)
	flipped[3] ^= 1
	bad := newReceiveCheck(info, 0, 0)
	if err := bad.add(flipped); err != nil {
		t.Fatal(err)
	}
	if err := bad.finish(); status.Code(err) != codes.DataLoss {
		t.Errorf("a flipped bit gave %v, want DATA_LOSS", err)
	}

	short := newReceiveCheck(info, 0, 0)
	short.add(data[:4])
	if err := short.finish(); status.Code(err) != codes.DataLoss {
		t.Errorf("a short download gave %v, want DATA_LOSS", err)
	}

	// A range checks its length only: no CRC32C covers part of an object.
	ranged := newReceiveCheck(info, 4, 6)
	if err := ranged.add(flipped[4:10]); err != nil {
		t.Fatal(err)
	}
	if err := ranged.finish(); err != nil {
		t.Errorf("a 6-byte range failed: %v", err)
	}
	if err := newReceiveCheck(info, 4, 6).add(make([]byte, 7)); status.Code(err) != codes.DataLoss {
		t.Errorf("7 bytes for a 6-byte range gave %v, want DATA_LOSS", err)
	}
	tail := newReceiveCheck(info, int64(len(data))-2, 100)
	tail.add(data[len(data)-2:])
	if err := tail.finish(); err != nil {
		t.Errorf("a limit past the end should take the 2 bytes left: %v", err)
	}
}

func TestCRC32CIsCastagnoli(t *testing.T) {
	// The check value of CRC-32C (RFC 3720, B.4).
	if got := CRC32C([]byte("123456789")); got != 0xE3069283 {
		t.Errorf("CRC32C(123456789) = %08x, want e3069283", got)
	}
}
