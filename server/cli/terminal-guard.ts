/**
 * The check before `filestorage get KEY` writes a bytes object to a terminal:
 * binary output can leave a terminal unusable (as curl warns). Text is let
 * through; bytes that are not UTF-8 text (invalid UTF-8, or a NUL byte) stop
 * the output with FAILED_PRECONDITION suggesting a file or --force.
 *
 * The first CHECK_BYTES (or the whole object, if smaller) are held and
 * checked before anything is written; later bytes are checked as they pass,
 * so a text file with binary far inside stops there.
 */
import { Transform } from "node:stream";
import { FileStorageError, status } from "../../client/src/index.js";

/** Bytes looked at before the first byte reaches the terminal. */
export const CHECK_BYTES = 64 * 1024;

/** A Transform that passes UTF-8 text and fails on the first byte that is not (see above). */
export function terminalGuard(key: string, size: number): Transform {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const held: Buffer[] = [];
  let heldBytes = 0;
  let checking = true;
  const refuse = () =>
    new FileStorageError(
      status.FAILED_PRECONDITION,
      `"${key}" is binary (${size} bytes of kind bytes) and stdout is a terminal: write it to a file with ` +
        `\`filestorage get ${key} FILE\` or \`> FILE\`, or pass --force to print it anyway`,
    );
  const isText = (chunk: Buffer, final: boolean): boolean => {
    if (chunk.includes(0)) return false;
    try {
      decoder.decode(chunk, { stream: !final });
      return true;
    } catch {
      return false;
    }
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (!isText(chunk, false)) return done(refuse());
      if (!checking) return done(null, chunk);
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes < CHECK_BYTES) return done();
      checking = false;
      done(null, Buffer.concat(held.splice(0)));
    },
    flush(done) {
      if (!isText(Buffer.alloc(0), true)) return done(refuse());
      done(null, held.length > 0 ? Buffer.concat(held.splice(0)) : undefined);
    },
  });
}
