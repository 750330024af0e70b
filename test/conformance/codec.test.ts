/** The conformance suite against the codec layer over the memory backend, in each codec setting. */
import { randomBytes } from "node:crypto";
import { createCodecBackend, createKeyring } from "../../server/codec/codec-backend.js";
import { createMemoryBackend } from "../support/memory-backend.js";
import { CODEC_TOGGLES, describeBackendConformance } from "./backend-conformance.js";

const keyring = createKeyring({ primary: randomBytes(32) });
/** The daemon's default COMPRESSION_THRESHOLD_BYTES: the suite's compressible text is far above it. */
const THRESHOLD_BYTES = 1024;

const settings = [
  { name: "plain", compress: false, encrypt: false },
  { name: "gzip", compress: true, encrypt: false },
  { name: "AES", compress: false, encrypt: true },
  { name: "gzip+AES", compress: true, encrypt: true },
];

for (const setting of settings) {
  let savedBytes = 0;
  describeBackendConformance(
    `codec (${setting.name}) over memory`,
    async () => ({
      backend: createCodecBackend(createMemoryBackend(), {
        compression: { enabled: setting.compress, thresholdBytes: THRESHOLD_BYTES },
        encryption: setting.encrypt ? keyring : undefined,
        onCompressionSaved: (bytes) => (savedBytes += bytes),
      }),
      cleanup: async () => undefined,
    }),
    setting.encrypt ? CODEC_TOGGLES.encrypting : CODEC_TOGGLES.plain,
  );

  // Runs after its suite (jest keeps the order of a file): the setting did what it says.
  test(`codec (${setting.name}): the suite's compressible text was ${setting.compress ? "" : "not "}gzipped`, () => {
    if (setting.compress) expect(savedBytes).toBeGreaterThan(100_000);
    else expect(savedBytes).toBe(0);
  });
}
