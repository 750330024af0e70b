/**
 * Resumable uploads (DESIGN.md "Contract additions"; ByteStream's
 * Write/QueryWriteStatus semantics over StoreStream). A StoreStream whose
 * header carries an upload_id writes into a session kept by the local tier
 * (its row and file: backends/fs/upload-store.ts) whatever the primary tier:
 *
 * - The first stream of an id creates the session (write_offset 0), within
 *   MAX_OPEN_UPLOADS and MAX_OPEN_UPLOADS_PER_CALLER. Ids are per caller (the
 *   auth entry's name; "anonymous" without auth): another caller never sees,
 *   resumes or collides with a session.
 * - Received bytes become committed at checkpoints (receive-bytes.ts):
 *   committed_size counts fsynced bytes only, never decreases and survives a
 *   crash. A stream that is cancelled, times out or breaks leaves the session
 *   resumable at its committed size.
 * - A resume is a new stream with the same id, key and header fields and
 *   write_offset = committed size: another offset is OUT_OF_RANGE naming the
 *   committed size, another key or header INVALID_ARGUMENT naming the field.
 *   A resume while an older stream of the session is still attached (a
 *   connection the daemon has not yet seen die) takes over: the older one is
 *   stopped (ABORTED) and checkpointed first.
 * - A stream that half-closes completes the upload: the declared sizes
 *   (header, trailer) and the trailer's CRC32C (of the whole object) are
 *   checked against the committed bytes, then the object is written through
 *   the engine from the session's file (quotas, codec, chain: GCS, or the
 *   outbox during an outage), streamed. Until then the key keeps its
 *   previous version. A size mismatch keeps the session (nothing stored; it
 *   can be resumed); a CRC32C mismatch, or bytes the engine refuses as they
 *   are (INVALID_ARGUMENT, DATA_LOSS), discard it: the same bytes can never
 *   pass. Other failures (UNAVAILABLE...) keep it for another try.
 * - A completed session stays queryable (complete, its object) until it
 *   expires. Sessions expire UPLOAD_EXPIRY_SECONDS after a stream last
 *   touched them (or after completion); the sweeper (engine/expiry.ts)
 *   deletes them with their bytes and quota reservation.
 * - Quotas: an open session under a quota prefix holds a reservation for its
 *   bytes (its declared size up front, more as bytes arrive), which the
 *   completion's write commits. Reservations live in memory (or in Redis with
 *   shared quotas): on start-up every open session's committed bytes are
 *   reserved again from the index, before the daemon serves; one that no
 *   longer fits (QUOTAS lowered) is reserved again when it resumes, which is
 *   then RESOURCE_EXHAUSTED while it does not fit.
 */
import type { ObjectRecord } from "../backends/backend.js";
import type { UploadSessionRecord, UploadStore } from "../backends/fs/fs-backend.js";
import type { Engine } from "../engine/engine.js";
import { objectTooLarge } from "../engine/engine.js";
import type { QuotaReservation, Quotas } from "../engine/quota.js";
import { Code, StorageError, dataLoss, failedPrecondition, generationMismatch, invalidArgument, unavailable } from "../storage-error.js";
import { receiveBytes } from "./receive-bytes.js";
import { changedField, encodeHeader, type UploadHeader } from "./upload-header.js";

export { checkUploadId, type UploadHeader } from "./upload-header.js";

/** The settings the sessions enforce. */
export interface UploadLimits {
  /** UPLOAD_EXPIRY_SECONDS, in ms. */
  expiryMs: number;
  /** MAX_OPEN_UPLOADS */
  maxOpen: number;
  /** MAX_OPEN_UPLOADS_PER_CALLER */
  maxOpenPerCaller: number;
  /** MAX_OBJECT_BYTES */
  maxObjectBytes: number;
}

export interface UploadSessionsOptions {
  /** The local tier's sessions. */
  store: UploadStore;
  /** Completions write through it. */
  engine: Engine;
  quotas?: Quotas;
  limits: UploadLimits;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

/** One StoreStream carrying an upload_id, as the RPC edge decoded it. */
export interface UploadStream {
  /** The caller's name: its auth entry, or "anonymous". */
  caller: string;
  uploadId: string;
  writeOffset: bigint;
  header: UploadHeader;
  /** The data chunks: ends when the client half-closes, throws when the stream breaks. */
  chunks: AsyncIterable<Uint8Array>;
  /** The trailer, once the chunks have ended. */
  trailer: () => { size?: bigint; crc32c?: number } | undefined;
  /** The call's signal (cancel, deadline, shutdown). */
  signal: AbortSignal;
}

/** What QueryUpload reports. */
export interface UploadState {
  key: string;
  committedSize: number;
  complete: boolean;
  /** The stored object, once complete. */
  object?: ObjectRecord;
  /** Unix ms. */
  expiresAt: number;
}

export interface UploadSessions {
  /** Receives one stream of a session (see the file comment); resolves with the stored object once it completes. */
  receive(stream: UploadStream): Promise<ObjectRecord>;
  /**
   * The session's state, or undefined when the id is unknown or expired. When
   * the stream attached to it has just broken, waits (briefly) for its last
   * checkpoint, so a client resuming right after a drop learns all it sent.
   */
  query(caller: string, uploadId: string): Promise<UploadState | undefined>;
  /** Deletes the sessions expired at `now` (not those a stream is attached to); returns how many. */
  sweepExpired(now?: number): Promise<number>;
  /** Stops the streams attached (they stay resumable) and waits for their checkpoints. */
  close(): Promise<void>;
}

/** How long close() waits for attached streams to checkpoint. */
const CLOSE_WAIT_MS = 5000;
/** How long a query waits for the last checkpoint of a stream that just broke. */
const QUERY_WAIT_MS = 2000;
const SWEEP_BATCH = 1000;

interface Turn {
  ac: AbortController;
  /** The attached call's signal: aborted once the stream broke (it is checkpointing then). */
  call: AbortSignal;
  done: Promise<void>;
  /** Past the half-close: a newer stream waits instead of stopping it. */
  completing: boolean;
}

/** Opens the sessions over `opts.store`; reserves the quota of every open session again first. */
export async function createUploadSessions(opts: UploadSessionsOptions): Promise<UploadSessions> {
  const { store, engine, quotas, limits, log } = opts;
  const sid = (caller: string, id: string) => JSON.stringify([caller, id]);
  const turns = new Map<string, Turn>();
  /** Quota reservations of open sessions under a quota prefix, with the bytes they hold. */
  const reservations = new Map<string, { reservation: QuotaReservation; bytes: number }>();
  let creating: Promise<unknown> = Promise.resolve();
  let closing = false;

  if (quotas) {
    const now = Date.now();
    for (const s of store.listOpen()) {
      if (s.expiresAt <= now || !quotas.covers(s.key)) continue;
      try {
        reservations.set(sid(s.caller, s.id), { reservation: await quotas.reserve(s.key, s.committedSize), bytes: s.committedSize });
      } catch (err) {
        log?.warn({ err, uploadId: s.id }, "an open upload's bytes no longer fit its quota: it is reserved again when it resumes");
      }
    }
  }

  /** Waits until no other stream of the session runs, stopping one still receiving. */
  async function takeTurn(key: string, id: string, call: AbortSignal): Promise<{ turn: Turn; release: () => void }> {
    for (let current = turns.get(key); current; current = turns.get(key)) {
      if (!current.completing) current.ac.abort(new StorageError(Code.Aborted, `upload "${id}" was resumed by a newer stream`));
      await current.done;
    }
    if (closing) throw unavailable("the daemon is shutting down; resume the upload once it is back");
    let release!: () => void;
    const turn: Turn = { ac: new AbortController(), call, done: new Promise<void>((r) => (release = r)), completing: false };
    turns.set(key, turn);
    return {
      turn,
      release: () => {
        if (turns.get(key) === turn) turns.delete(key);
        release();
      },
    };
  }

  /** The session unless it is missing or expired (an expired one is deleted now). */
  async function live(caller: string, id: string): Promise<UploadSessionRecord | undefined> {
    const session = store.get(caller, id);
    if (session === undefined || session.expiresAt > Date.now()) return session;
    await discard(session);
    return undefined;
  }

  async function discard(session: UploadSessionRecord): Promise<void> {
    const key = sid(session.caller, session.id);
    await store.remove(session.caller, session.id);
    await reservations.get(key)?.reservation.release();
    reservations.delete(key);
  }

  /** A new session, within the limits; one creation at a time so the counts hold. */
  function create(s: UploadStream): Promise<UploadSessionRecord> {
    const run = creating.then(async () => {
      const now = Date.now();
      const open = store.countOpen(now);
      if (open >= limits.maxOpen) {
        throw new StorageError(
          Code.ResourceExhausted,
          `${open} resumable uploads are open, the most the daemon keeps (MAX_OPEN_UPLOADS=${limits.maxOpen}); ` +
            `complete one, or wait for abandoned ones to expire (UPLOAD_EXPIRY_SECONDS=${limits.expiryMs / 1000})`,
        );
      }
      const mine = store.countOpen(now, s.caller);
      if (mine >= limits.maxOpenPerCaller) {
        throw new StorageError(
          Code.ResourceExhausted,
          `caller "${s.caller}" has ${mine} resumable uploads open, the most allowed per caller (MAX_OPEN_UPLOADS_PER_CALLER=${limits.maxOpenPerCaller}); ` +
            `complete one, or wait for abandoned ones to expire (UPLOAD_EXPIRY_SECONDS=${limits.expiryMs / 1000})`,
        );
      }
      return store.create({ caller: s.caller, id: s.uploadId, key: s.header.key, header: encodeHeader(s.header), expiresAt: now + limits.expiryMs });
    });
    creating = run.catch(() => undefined);
    return run;
  }

  /** Checks what a new session can check before any byte: the declared size and the generation precondition. */
  async function checkNew(s: UploadStream): Promise<void> {
    const { declaredSize, ifGenerationMatch, key } = s.header;
    if (declaredSize !== undefined && declaredSize > limits.maxObjectBytes) throw objectTooLarge(declaredSize, limits.maxObjectBytes);
    if (ifGenerationMatch === undefined) return;
    let current: ObjectRecord | undefined;
    try {
      current = await engine.head(key, { signal: s.signal });
    } catch (err) {
      // During an outage the completion checks it (and may refuse the write then).
      if (StorageError.is(err, Code.Unavailable)) return;
      throw err;
    }
    if (ifGenerationMatch === 0n ? current !== undefined : current?.generation !== ifGenerationMatch) {
      throw generationMismatch(key, ifGenerationMatch, current?.generation);
    }
  }

  /** The session's reservation (taken when missing: a new session, or one whose start-up reservation failed). */
  async function reservationFor(session: UploadSessionRecord, declaredSize: number | undefined) {
    if (!quotas?.covers(session.key)) return undefined;
    const key = sid(session.caller, session.id);
    let held = reservations.get(key);
    if (held === undefined) {
      const bytes = Math.max(session.committedSize, declaredSize ?? 0);
      held = { reservation: await quotas.reserve(session.key, bytes), bytes };
      reservations.set(key, held);
    }
    return held;
  }

  async function receive(s: UploadStream): Promise<ObjectRecord> {
    const { uploadId: id, header } = s;
    const { turn, release } = await takeTurn(sid(s.caller, id), id, s.signal);
    try {
      let session = await live(s.caller, id);
      if (session === undefined) {
        if (s.writeOffset !== 0n) {
          throw new StorageError(Code.NotFound, `upload "${id}" is unknown or expired: start it again with write_offset 0`);
        }
        await checkNew(s);
        session = await create(s);
      } else {
        if (session.key !== header.key) throw invalidArgument(`upload "${id}" was started for another key: a resume must repeat its key`);
        const field = changedField(session.header, header);
        if (field !== undefined) throw invalidArgument(`upload "${id}" was started with another ${field}: a resume must repeat the header of its first stream`);
        if (s.writeOffset !== BigInt(session.committedSize)) {
          throw new StorageError(
            Code.OutOfRange,
            `write_offset ${s.writeOffset} is not where upload "${id}" continues: its committed size is ${session.committedSize} bytes; resume at write_offset ${session.committedSize}`,
          );
        }
      }
      if (session.object !== undefined) return await answerCompleted(session, s);
      const held = await reservationFor(session, header.declaredSize);
      await receiveInto(session, s, held, AbortSignal.any([s.signal, turn.ac.signal]));
      turn.completing = true;
      return await complete(session, s, held);
    } finally {
      release();
    }
  }

  async function receiveInto(session: UploadSessionRecord, s: UploadStream, held: { reservation: QuotaReservation; bytes: number } | undefined, signal: AbortSignal) {
    const declared = s.header.declaredSize;
    const writer = await store.openWriter(session);
    try {
      await receiveBytes({
        session,
        writer,
        chunks: s.chunks,
        signal,
        log,
        expiresAt: () => Date.now() + limits.expiryMs,
        admit: async (after) => {
          if (declared !== undefined && after > declared) {
            throw invalidArgument(
              `upload "${s.uploadId}" would hold ${after} bytes, more than the header's declared size ${declared}; the ${writer.size} bytes before this chunk are kept`,
            );
          }
          if (after > limits.maxObjectBytes) throw objectTooLarge(after, limits.maxObjectBytes);
          if (held && after > held.bytes) {
            await held.reservation.grow(after - held.bytes);
            held.bytes = after;
          }
        },
      });
    } finally {
      await writer.close();
    }
  }

  async function complete(session: UploadSessionRecord, s: UploadStream, held: { reservation: QuotaReservation } | undefined): Promise<ObjectRecord> {
    const { uploadId: id, header } = s;
    const size = session.committedSize;
    const trailer = s.trailer();
    for (const [what, declared] of [["header", header.declaredSize === undefined ? undefined : BigInt(header.declaredSize)], ["trailer", trailer?.size]] as const) {
      if (declared !== undefined && declared !== BigInt(size)) {
        throw invalidArgument(
          `upload "${id}" holds ${size} bytes but the ${what} declared size ${declared}; nothing was stored ` +
            `(the upload stays open: resume it at write_offset ${size})`,
        );
      }
    }
    const crc = session.crc32c >>> 0;
    if (trailer?.crc32c !== undefined && trailer.crc32c >>> 0 !== crc) {
      await discard(session);
      throw dataLoss(
        `crc32c mismatch: the trailer says ${trailer.crc32c >>> 0} but the ${size} bytes of upload "${id}" have ${crc}; ` +
          `nothing was stored and the upload was discarded`,
      );
    }
    let record: ObjectRecord;
    try {
      record = await engine.put(
        header.key,
        store.source(session),
        { kind: header.kind, contentType: header.contentType, metadata: header.metadata, expiresAt: header.expiresAt },
        {
          ifGenerationMatch: header.ifGenerationMatch,
          signal: s.signal,
          declaredSize: size,
          reservation: held?.reservation,
          verify: (read) => {
            if (read.size !== size || read.crc32c >>> 0 !== crc) {
              throw dataLoss(`the local file of upload "${id}" no longer holds the bytes received; nothing was stored`);
            }
          },
        },
      );
    } catch (err) {
      // The same bytes would fail again: nothing is left to resume.
      if (StorageError.is(err, Code.InvalidArgument, Code.DataLoss)) await discard(session);
      throw err;
    }
    // The engine committed the reservation with the write.
    reservations.delete(sid(session.caller, session.id));
    await store.complete(session, encodeRecord(record), Date.now() + limits.expiryMs).catch((err: unknown) => {
      // Stored all the same; the session stays open and a resume would store it again.
      log?.warn({ err, uploadId: id }, "an upload's object was stored but its session could not be marked complete");
    });
    return record;
  }

  /** A stream of a completed session: nothing more may arrive; its half-close answers the stored object again. */
  async function answerCompleted(session: UploadSessionRecord, s: UploadStream): Promise<ObjectRecord> {
    for await (const chunk of s.chunks) {
      if (chunk.byteLength > 0) throw failedPrecondition(`upload "${s.uploadId}" is complete already; write the key again with a new upload_id`);
    }
    return decodeRecord(session.object!);
  }

  async function query(caller: string, id: string): Promise<UploadState | undefined> {
    const turn = turns.get(sid(caller, id));
    if (turn && !turn.completing && (turn.call.aborted || turn.ac.signal.aborted)) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([turn.done, new Promise((r) => (timer = setTimeout(r, QUERY_WAIT_MS)))]);
      clearTimeout(timer);
    }
    const session = store.get(caller, id);
    if (session === undefined) return undefined;
    const now = Date.now();
    // A session a stream is attached to is not abandoned, whatever its recorded expiry.
    const attached = turns.has(sid(caller, id));
    if (!attached && session.expiresAt <= now) return undefined;
    return {
      key: session.key,
      committedSize: session.committedSize,
      complete: session.object !== undefined,
      object: session.object === undefined ? undefined : decodeRecord(session.object),
      expiresAt: attached ? Math.max(session.expiresAt, now + limits.expiryMs) : session.expiresAt,
    };
  }

  async function sweepExpired(now = Date.now()): Promise<number> {
    let count = 0;
    const seen = new Set<string>();
    for (;;) {
      const batch = store.expired(now, SWEEP_BATCH).filter((s) => !seen.has(sid(s.caller, s.id)));
      if (batch.length === 0) return count;
      for (const { caller, id } of batch) {
        const key = sid(caller, id);
        seen.add(key);
        if (turns.has(key)) continue;
        const session = store.get(caller, id);
        if (session === undefined || session.expiresAt > now) continue;
        await discard(session);
        count++;
      }
    }
  }

  return {
    receive,
    query,
    sweepExpired,
    async close() {
      closing = true;
      const attached = [...turns.values()];
      for (const t of attached) if (!t.completing) t.ac.abort(unavailable("the daemon is shutting down; resume the upload once it is back"));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(attached.map((t) => t.done)), new Promise((r) => (timer = setTimeout(r, CLOSE_WAIT_MS)))]);
      clearTimeout(timer);
    },
  };
}

/** A stored record as kept with a completed session (generations are int64: kept as text). */
function encodeRecord(record: ObjectRecord): string {
  return JSON.stringify({ ...record, generation: record.generation.toString() });
}

function decodeRecord(text: string): ObjectRecord {
  const parsed = JSON.parse(text) as Omit<ObjectRecord, "generation"> & { generation: string };
  return { ...parsed, generation: BigInt(parsed.generation) };
}
