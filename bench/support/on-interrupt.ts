/**
 * Cleanup on Ctrl-C for benchmarks that leave servers and gigabytes behind:
 * on SIGINT or SIGTERM the registered cleanups run (newest first), then the
 * process exits with 130 (143 for SIGTERM). A second signal exits at once.
 */

type Cleanup = () => Promise<void> | void;

const cleanups: Cleanup[] = [];
let installed = false;
let running = false;

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  const code = signal === "SIGINT" ? 130 : 143;
  if (running) process.exit(code);
  running = true;
  console.error(`\n${signal}: stopping the servers and removing the temp folders...`);
  for (const cleanup of [...cleanups].reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
  process.exit(code);
}

/**
 * Runs `cleanup` if the process is interrupted; returns a function that
 * unregisters it (call it once the normal path has cleaned up itself).
 */
export function onInterrupt(cleanup: Cleanup): () => void {
  if (!installed) {
    installed = true;
    process.on("SIGINT", (s) => void onSignal(s));
    process.on("SIGTERM", (s) => void onSignal(s));
  }
  cleanups.push(cleanup);
  return () => {
    const i = cleanups.indexOf(cleanup);
    if (i >= 0) cleanups.splice(i, 1);
  };
}
