package filestorage

import "hash/crc32"

// castagnoli is the CRC32C table the daemon's checksums use (hash/crc32 runs
// it with the CPU's CRC32 instruction where there is one).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC32C (Castagnoli) checksum of data, as ObjectInfo's
// CRC32C field holds it.
func CRC32C(data []byte) uint32 {
	return crc32.Checksum(data, castagnoli)
}
