/**
 * Validation of an object's bytes against its declared kind, fed chunk by
 * chunk as the upload streams: TEXT must be UTF-8, JSON must be one JSON
 * value, BYTES may be anything. Nothing is parsed into values and nothing is
 * eval'd: memory stays constant whatever the size of the object.
 *
 * JSON accepts exactly what `JSON.parse` of the UTF-8-decoded text accepts
 * (one value, surrounded by JSON whitespace only; strict numbers, escapes and
 * control characters; lone surrogates written as \u escapes are accepted, as
 * JSON.parse does), with one addition: arrays and objects nest at most
 * `maxJsonDepth` levels. Invalid UTF-8 is refused and one leading byte-order
 * mark is dropped, as the UTF-8 decoding before JSON.parse always did.
 */
import { none } from "stream-chain/defs.js";
import { jsonVerifier } from "stream-json/core/utils/verifier.js";
import type { DataKindName } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

/** MAX_JSON_DEPTH's default: far deeper than documents nest, and a few KiB of validator state. */
export const DEFAULT_MAX_JSON_DEPTH = 10_000;

/** A streaming validator for one object's bytes. */
export interface KindCheck {
  /** Feeds the next chunk; throws INVALID_ARGUMENT as soon as the data is known bad. */
  update(chunk: Uint8Array): void;
  /** Called once after the last chunk; throws INVALID_ARGUMENT when the whole is bad. */
  end(): void;
}

/**
 * A checker for `kind`. For JSON, `maxJsonDepth` (MAX_JSON_DEPTH) bounds the
 * nesting, and with it the validator's only state that grows with the input.
 */
export function createKindCheck(kind: DataKindName, maxJsonDepth: number): KindCheck {
  switch (kind) {
    case "BYTES":
      return { update() {}, end() {} };
    case "TEXT":
      return textCheck();
    case "JSON":
      return jsonCheck(maxJsonDepth);
  }
}

/** Decodes UTF-8 across chunk boundaries; `onInvalid` names the byte range of the bad chunk. */
function utf8Decoder(onInvalid: (from: number, to: number) => Error) {
  // fatal: refuse invalid bytes. ignoreBOM false: one leading BOM is dropped.
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let offset = 0;
  return (chunk?: Uint8Array): string => {
    const from = offset;
    offset += chunk?.length ?? 0;
    try {
      // stream: true keeps a sequence split across chunks for the next call.
      return decoder.decode(chunk, { stream: chunk !== undefined });
    } catch {
      throw onInvalid(Math.max(0, from - 3), offset);
    }
  };
}

function textCheck(): KindCheck {
  const decode = utf8Decoder(() => invalidArgument("data of kind TEXT is not valid UTF-8"));
  return { update: (chunk) => void decode(chunk), end: () => void decode() };
}

/** Bytes of UTF-8 decoded and verified at a time. */
const JSON_SLICE_BYTES = 64 * 1024;

function jsonCheck(maxDepth: number): KindCheck {
  const decode = utf8Decoder((from, to) =>
    invalidArgument(`data is not valid JSON: it is not valid UTF-8 (in bytes ${from} to ${to})`),
  );
  // A flushable: text as it arrives, then `none` to say the input has ended.
  const verify = jsonVerifier() as (text: string | typeof none) => unknown;
  const guard = depthGuard(maxDepth);
  const verifyText = (text: string, last: boolean) => {
    try {
      if (text.length > 0) verify(text);
      if (last) verify(none);
    } catch (err) {
      throw verifierError(err);
    }
  };
  return {
    update(chunk) {
      // In slices: the decoded text stays small and short-lived, so the
      // garbage is collected young instead of growing the old generation.
      for (let at = 0; at < chunk.length; at += JSON_SLICE_BYTES) {
        const slice = chunk.subarray(at, at + JSON_SLICE_BYTES);
        // The guard runs first so the verifier's stack never outgrows the limit.
        guard(slice);
        verifyText(decode(slice), false);
      }
    },
    end: () => verifyText(decode(), true),
  };
}

/** The verifier's error as INVALID_ARGUMENT with its reason and position; anything else is a bug and stays as it is. */
function verifierError(err: unknown): unknown {
  const e = err as { message?: string; line?: unknown; pos?: unknown; offset?: unknown };
  if (typeof e?.message !== "string" || typeof e.line !== "number" || typeof e.pos !== "number") return err;
  // "ERROR at 14 (2, 7): Verifier cannot parse input: expected a value" -> "expected a value"
  const reason = e.message.replace(/^ERROR at \d+ \(\d+, \d+\): /, "").replace(/^Verifier (cannot parse input: )?/, "");
  return invalidArgument(`data is not valid JSON: ${reason} at line ${e.line}, column ${e.pos} (character ${String(e.offset)})`);
}

/**
 * Counts the nesting of arrays and objects over the UTF-8 bytes, which may be
 * cut anywhere (inside a string, right after a backslash); throws
 * INVALID_ARGUMENT past `max`. The bytes it looks at (quote, backslash,
 * brackets, braces) are ASCII and never part of a multi-byte character.
 * Exact for valid JSON; for invalid JSON the verifier reports the fault.
 */
function depthGuard(max: number): (bytes: Uint8Array) => void {
  let depth = 0;
  let inString = false;
  let escaped = false;
  let offset = 0;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) inString = false;
      } else if (b === QUOTE) inString = true;
      else if (b === OPEN_BRACKET || b === OPEN_BRACE) {
        if (++depth > max) {
          throw invalidArgument(
            `data of kind JSON nests arrays and objects more than ${max} levels deep (MAX_JSON_DEPTH), at byte ${offset + i}`,
          );
        }
      } else if (b === CLOSE_BRACKET || b === CLOSE_BRACE) depth--;
    }
    offset += bytes.length;
  };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
