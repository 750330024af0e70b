/**
 * The codec layer: a Backend that wraps another and turns original bytes into
 * stored bytes and back, as stream stages with constant memory.
 *
 * Write: kind check + size + CRC32C of the original bytes -> gzip (when enabled,
 * the object is at least the threshold, its type is not compressed already and
 * a sample shrinks) -> AES-256-GCM segments (when a keyring is given). The
 * inner backend gets the original size and CRC32C and the encoding in PutMeta.
 * Encrypted objects are bound to their key, kind, compression, a random
 * object id per write (kept in encoding.encryption.objectId) and their
 * original size (encryption-format.ts), so stored bytes moved to another key,
 * rolled back under a newer record or resized fail to read.
 * Read: the exact reverse. Ranges are in original bytes; full reads verify the
 * original CRC32C. Records always describe the original object (size, crc32c)
 * with storedSize and encoding from the inner backend.
 */
import { Readable } from "node:stream";
import type {
  Backend,
  Encoding,
  GetOptions,
  ObjectRecord,
  PutMeta,
  PutOptions,
} from "../backends/backend.js";
import { FileBackedSource, checkRange } from "../backends/backend.js";
import { Code, StorageError, dataLoss, generationMismatch } from "../storage-error.js";
import { ByteQueue } from "./byte-queue.js";
import { SAMPLE_BYTES, gunzipStage, gzipStage, isCompressibleType, sampleCompresses } from "./compression.js";
import { checkHeader, decryptSegments, encryptSegments, keyFor, planSegments } from "./encryption.js";
import { HEADER_BYTES, newObjectId, parseHeader, type EncryptionRecord, type ObjectBinding } from "./encryption-format.js";
import { DEFAULT_MAX_JSON_DEPTH, createKindCheck } from "./kind-check.js";
import type { Keyring } from "./keyring.js";
import { countBytes, inspect, readAll, resume, slice, toBody, verifyChecksum } from "./stream-stages.js";

export { createKeyring, deriveKeyId, type Keyring } from "./keyring.js";

/** Typed options of the codec layer, validated by the caller (config). */
export interface CodecOptions {
  compression: {
    enabled: boolean;
    /** Objects smaller than this are stored uncompressed. */
    thresholdBytes: number;
    /** gzip level 1..9; default 1 (fast, and most of the gain on JSON). */
    level?: number;
  };
  /** Encrypts new writes with the primary key; undefined = encryption off
   * (encrypted objects then fail to read with FAILED_PRECONDITION). */
  encryption?: Keyring;
  /** With encryption on, still serve objects stored unencrypted (a migration
   * aid, ALLOW_UNENCRYPTED_READS); otherwise they are DATA_LOSS. */
  allowUnencryptedReads?: boolean;
  /** Deepest nesting of arrays and objects in a JSON object (MAX_JSON_DEPTH); default DEFAULT_MAX_JSON_DEPTH. */
  maxJsonDepth?: number;
  /** Called after a compressed write committed, with original - compressed bytes. */
  onCompressionSaved?: (bytes: number) => void;
}

/** A file-backed source stored as it is, read through the codec's checks each time it is read. */
class InspectedFile extends FileBackedSource {
  readonly file: string;
  readonly byteLength: number;
  constructor(
    private readonly source: FileBackedSource,
    private readonly inspected: (from: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>,
  ) {
    super();
    this.file = source.file;
    this.byteLength = source.byteLength;
  }
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.inspected(this.source)[Symbol.asyncIterator]();
  }
}

/** How many times a ranged read re-reads an object replaced while it was being read. */
const RANGE_READ_ATTEMPTS = 3;

/** The object changed between the head and the data read of a ranged read. */
class ObjectChanged extends Error {}

/**
 * Wraps `inner` in the codec. put() validates the kind (INVALID_ARGUMENT, and
 * the inner backend keeps the old version), calls opts.verify with the
 * original size and CRC32C before the commit, and stores the encoded bytes.
 * get() decodes; tampered, truncated, moved or rolled-back data is DATA_LOSS,
 * so is (with encryption on, unless allowUnencryptedReads) an object stored
 * unencrypted, and a key id missing from the keyring FAILED_PRECONDITION —
 * never wrong bytes. Memory is bounded by max(thresholdBytes, 64 KiB) plus a
 * few 64 KiB segments, whatever the size (JSON is validated as it streams).
 * Everything else passes through.
 *
 * The inner backend must record PutMeta.size, crc32c and encoding as they are
 * once the source it was given has ended (encoding is final before the first
 * stored byte, size and crc32c only at the end).
 */
export function createCodecBackend(inner: Backend, opts: CodecOptions): Backend {
  const keyring = opts.encryption;
  const level = opts.compression.level ?? 1;

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: PutOptions = {}) {
    // verify is ours to call with the original bytes; the inner one would see stored bytes.
    const { verify, ...innerOpts } = putOpts;
    const innerMeta: PutMeta = { ...meta, size: undefined, crc32c: undefined, encoding: {} };
    let compressedBytes: number | undefined;
    const inspected = (from: AsyncIterable<Uint8Array>) =>
      inspect(from, createKindCheck(meta.kind, opts.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH), (received) => {
        // Throwing here fails the source the inner backend drains, before it commits.
        verify?.(received);
        innerMeta.size = received.size;
        innerMeta.crc32c = received.crc32c;
      });
    if (source instanceof FileBackedSource && !(await encodesFile(source, meta))) {
      // Stored as they are: the inner tier may keep the file itself, reading it through these checks first.
      const record = await inner.put(key, new InspectedFile(source, inspected), innerMeta, innerOpts);
      return record;
    }
    const stored = encode(key, inspected(source), innerMeta, (n) => (compressedBytes = n));
    const record = await inner.put(key, stored, innerMeta, innerOpts);
    if (compressedBytes !== undefined && innerMeta.size! > compressedBytes) {
      opts.onCompressionSaved?.(innerMeta.size! - compressedBytes);
    }
    return record;
  }

  /** Whether a file-backed source would be stored other than as it is (encrypted, or compressed: its first bytes sampled as encode() would). */
  async function encodesFile(source: FileBackedSource, meta: PutMeta): Promise<boolean> {
    if (keyring) return true;
    if (!opts.compression.enabled || !isCompressibleType(meta.contentType) || source.byteLength < opts.compression.thresholdBytes) return false;
    const lead = new ByteQueue();
    for await (const chunk of source) {
      lead.push(chunk);
      if (lead.length >= SAMPLE_BYTES) break;
    }
    return sampleCompresses(lead.peek(SAMPLE_BYTES));
  }

  /** Decides the encoding (setting meta.encoding before the first stored byte) and encodes. */
  async function* encode(
    key: string,
    original: AsyncIterable<Uint8Array>,
    meta: PutMeta,
    onCompressed: (bytes: number) => void,
  ): AsyncGenerator<Uint8Array> {
    const iterator = original[Symbol.asyncIterator]();
    const lead = new ByteQueue();
    let ended = false;
    let compress = false;
    if (opts.compression.enabled && isCompressibleType(meta.contentType)) {
      // Hold enough to know the object reaches the threshold and to sample it.
      const needed = Math.max(opts.compression.thresholdBytes, SAMPLE_BYTES);
      while (lead.length < needed) {
        const step = await iterator.next();
        if (step.done) {
          ended = true;
          break;
        }
        lead.push(step.value);
      }
      compress = lead.length >= opts.compression.thresholdBytes && (await sampleCompresses(lead.peek(SAMPLE_BYTES)));
    }
    const encoding: Encoding = {};
    if (compress) encoding.compression = "gzip";
    // A fresh id per write: bytes of another object or of an older version of this one carry another.
    const objectId = keyring && newObjectId();
    if (keyring) {
      const encryption: EncryptionRecord = { keyId: keyring.primary.id, objectId };
      encoding.encryption = encryption;
    }
    meta.encoding = encoding;

    let stream: AsyncIterable<Uint8Array> = resume(lead.drain(), ended ? undefined : iterator);
    if (compress) stream = countBytes(gzipStage(stream, level), onCompressed);
    if (keyring && objectId) {
      const binding: ObjectBinding = { key, kind: meta.kind, compression: encoding.compression };
      // The original size is known once the source ended, which is before the final segment is sealed.
      stream = encryptSegments(stream, { keyring, binding, objectId, originalSize: () => meta.size });
    }
    yield* stream;
  }

  async function get(key: string, getOpts: GetOptions = {}) {
    const { range, ...rest } = getOpts;
    if (range === undefined) {
      const got = await inner.get(key, rest);
      return got && { record: got.record, body: decodeWhole(got.record, got.body) };
    }
    checkRange(range);
    // Without encryption most objects are stored as they are: the range is
    // read straight away (one request), and only an encoded object costs the
    // mapped read after it (the record of this answer serves as its head).
    let known: ObjectRecord | undefined;
    if (keyring === undefined) {
      const got = await inner.get(key, { ...rest, range }).catch((err: unknown) => {
        // Past the stored end: a compressed object may still hold the range.
        if (StorageError.is(err, Code.OutOfRange)) return null;
        throw err;
      });
      if (got === undefined) return undefined;
      if (got !== null) {
        const { record } = got;
        if (record.encoding.compression === undefined && encryptionOf(record) === undefined) {
          const whole = range.offset === 0 && (range.length ?? Infinity) >= record.size;
          return { record, body: whole ? decodeWhole(record, got.body) : got.body };
        }
        got.body.destroy();
        known = record;
      }
    }
    for (let attempt = 1; ; attempt++) {
      const head = known ?? (await inner.head(key, { signal: rest.signal }));
      known = undefined;
      if (head === undefined) return undefined;
      try {
        return await getRange(key, head, range, rest);
      } catch (err) {
        if (!(err instanceof ObjectChanged)) throw err;
        if (attempt === RANGE_READ_ATTEMPTS) {
          throw new StorageError(Code.Aborted, `object "${key}" kept changing while it was read; try again`);
        }
      }
    }
  }

  /** A ranged read of the object `head` describes; ObjectChanged when it was replaced meanwhile. */
  async function getRange(
    key: string,
    head: ObjectRecord,
    range: { offset: number; length?: number },
    rest: Omit<GetOptions, "range">,
  ) {
    const callerPinned = rest.ifGenerationMatch !== undefined;
    const readStored = async (storedRange?: { offset: number; length: number }) => {
      try {
        // The head just read is the current answer: a caching layer below need not ask again.
        const got = await inner.get(key, { ...rest, range: storedRange, ifGenerationMatch: rest.ifGenerationMatch ?? head.generation, confirmed: head });
        if (got === undefined) throw new ObjectChanged();
        return got;
      } catch (err) {
        if (!callerPinned && StorageError.is(err, Code.FailedPrecondition)) throw new ObjectChanged();
        // The range was checked against the record, and this generation is the record's: its bytes are short.
        if (StorageError.is(err, Code.OutOfRange)) throw dataLoss(`stored data of object "${key}" is shorter than its record says`, err);
        throw err;
      }
    };
    if (callerPinned && head.generation !== rest.ifGenerationMatch) {
      throw generationMismatch(key, rest.ifGenerationMatch!, head.generation);
    }
    if (range.offset > head.size) {
      throw new StorageError(Code.OutOfRange, `offset ${range.offset} is past the end of the object (${head.size} bytes)`);
    }
    refuseUnencrypted(head);
    const want = Math.min(range.length ?? Infinity, head.size - range.offset);
    if (range.offset === 0 && want === head.size) {
      const got = await readStored();
      return { record: got.record, body: decodeWhole(got.record, got.body) };
    }
    const { compression } = head.encoding;
    const encryption = encryptionOf(head);
    if (compression === undefined && encryption === undefined) {
      return readStored({ offset: range.offset, length: want });
    }
    if (encryption !== undefined) keyFor(keyring, encryption.keyId);
    if (want === 0) return { record: head, body: toBody([]) };
    // A range that reaches the end reads on to the final segment, which binds the original size.
    const toEnd = range.offset + want === head.size;

    if (compression !== undefined) {
      // gzip cannot seek: decode from the start, drop up to the offset, stop after the range.
      const got = await readStored();
      let stream: AsyncIterable<Uint8Array> = got.body;
      if (encryption !== undefined) stream = decryptSegments(stream, decryptOptions(head, encryption));
      return { record: got.record, body: toBody(slice(gunzipStage(stream), range.offset, want, toEnd), got.body) };
    }
    // Encrypted only: read the header (the longest one: every encrypted object
    // is at least that long), then just the segments holding the range.
    const headerRead = await readStored({ offset: 0, length: HEADER_BYTES });
    const header = parseHeader(await readAll(headerRead.body, HEADER_BYTES));
    checkHeader(header, encryption!, key);
    const plan = planSegments(head.size, range.offset, want, { segmentBytes: header.segmentBytes, headerBytes: header.raw.length });
    const got = await readStored({ offset: plan.storedOffset, length: plan.storedLength });
    const { firstIndex, finalIndex, segmentCount } = plan;
    const plain = decryptSegments(got.body, { ...decryptOptions(head, encryption!), header, firstIndex, finalIndex, segmentCount });
    return { record: got.record, body: toBody(slice(plain, plan.skip, want, toEnd), got.body) };
  }

  /** How the segments of the object `record` describes must decrypt. */
  function decryptOptions(record: ObjectRecord, encryption: EncryptionRecord) {
    const binding: ObjectBinding = { key: record.key, kind: record.kind, compression: record.encoding.compression };
    return { keyring, binding, record: encryption, originalSize: record.size };
  }

  /** With encryption on, an object stored unencrypted is refused (DATA_LOSS naming its key) unless allowed. */
  function refuseUnencrypted(record: ObjectRecord): void {
    if (keyring === undefined || encryptionOf(record) !== undefined || opts.allowUnencryptedReads) return;
    // Anyone who can write the bucket or the folder could have planted it.
    throw dataLoss(
      `object "${record.key}" is stored unencrypted but ENABLE_ENCRYPTION is on, so it is refused ` +
        `(ALLOW_UNENCRYPTED_READS=true serves objects stored before encryption was turned on)`,
    );
  }

  /** Decodes a whole stored object and checks the original size and CRC32C at its end. */
  function decodeWhole(record: ObjectRecord, body: Readable): Readable {
    const { compression } = record.encoding;
    const encryption = encryptionOf(record);
    let stream: AsyncIterable<Uint8Array> = body;
    try {
      refuseUnencrypted(record);
      if (encryption !== undefined) keyFor(keyring, encryption.keyId);
    } catch (err) {
      body.destroy();
      throw err;
    }
    // Stored as they were given, and the tier's own CRC32C of them (which it checks a whole read
    // against: the Backend contract) is the original's: a second pass would only cost time. When
    // the two differ (bytes rewritten under the record), the check below catches it.
    if (encryption === undefined && compression === undefined && record.storedSize === record.size && record.storedCrc32c === record.crc32c) {
      return body;
    }
    if (encryption !== undefined) stream = decryptSegments(stream, decryptOptions(record, encryption));
    if (compression !== undefined) stream = gunzipStage(stream);
    return toBody(verifyChecksum(stream, record.size, record.crc32c), body);
  }

  return {
    name: `codec(${inner.name})`,
    put,
    get,
    head: (key, o) => inner.head(key, o),
    delete: (key, o) => inner.delete(key, o),
    list: (o) => inner.list(o),
    probe: (signal) => inner.probe(signal),
    close: () => inner.close(),
    outbox: inner.outbox,
  };
}

/** The encryption entry of a record, with the object id format 2 adds. */
function encryptionOf(record: ObjectRecord): EncryptionRecord | undefined {
  return record.encoding.encryption;
}
