/**
 * Validation of an object's bytes against its declared kind, fed chunk by
 * chunk as the upload streams: TEXT must be UTF-8, JSON must parse, BYTES may
 * be anything. Nothing is ever eval'd; the parsed JSON is thrown away.
 */
import type { DataKindName } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

/** A streaming validator for one object's bytes. */
export interface KindCheck {
  /** Feeds the next chunk; throws INVALID_ARGUMENT as soon as the data is known bad. */
  update(chunk: Uint8Array): void;
  /** Called once after the last chunk; throws INVALID_ARGUMENT when the whole is bad. */
  end(): void;
}

/**
 * A checker for `kind`. JSON is held in memory up to `maxJsonBytes` to be
 * parsed at the end; a larger JSON object is INVALID_ARGUMENT naming the limit.
 */
export function createKindCheck(kind: DataKindName, maxJsonBytes: number): KindCheck {
  switch (kind) {
    case "BYTES":
      return { update() {}, end() {} };
    case "TEXT":
      return textCheck();
    case "JSON":
      return jsonCheck(maxJsonBytes);
  }
}

function textCheck(): KindCheck {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const decode = (chunk?: Uint8Array) => {
    try {
      // stream: true keeps a sequence split across chunks for the next call.
      decoder.decode(chunk, { stream: chunk !== undefined });
    } catch {
      throw invalidArgument("data of kind TEXT is not valid UTF-8");
    }
  };
  return { update: decode, end: () => decode() };
}

function jsonCheck(maxJsonBytes: number): KindCheck {
  const chunks: Uint8Array[] = [];
  let total = 0;
  return {
    update(chunk) {
      total += chunk.length;
      if (total > maxJsonBytes) {
        throw invalidArgument(`data of kind JSON exceeds the ${maxJsonBytes}-byte limit for JSON validation (max_json_bytes)`);
      }
      chunks.push(chunk);
    },
    end() {
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
      } catch {
        throw invalidArgument("data is not valid JSON: it is not valid UTF-8");
      }
      try {
        JSON.parse(text);
      } catch (err) {
        // The parser's message (position, nearby text) helps the caller find the fault.
        throw invalidArgument(`data is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
      }
    },
  };
}
