/**
 * The direction of imports in server/ and client/ (README "Architecture"):
 *   rpc -> uploads -> engine -> layers (chain, codec, cache, metrics) -> backends -> contracts
 * `npm run lint` fails on any import that runs up a layer, and on cycles.
 * Contracts at the bottom (storage-error.ts, signals.ts, keys.ts,
 * backends/backend.ts, backends/write-origin.ts) import nothing above them.
 */
const LAYERS_ABOVE_BACKENDS = "^server/(engine|uploads|rpc|cache|codec|metrics|tracing|auth|config|cli)/|^server/(stack|server|logger|log-destination)\\.ts$";

module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      severity: "error",
      comment: "A cycle makes two modules one: split what both need into a third.",
      from: { path: "^(server|client/src)/" },
      to: { circular: true },
    },
    {
      name: "backends-stay-below",
      severity: "error",
      comment: "A backend knows only the contracts (and its SDK), never a layer, the engine or the RPC edge.",
      from: { path: "^server/backends/" },
      to: { path: LAYERS_ABOVE_BACKENDS },
    },
    {
      name: "no-backend-imports-another",
      severity: "error",
      comment: "Each backend folder stands alone; shared plumbing belongs in the contracts.",
      from: { path: "^server/backends/(fs|gcs)/" },
      to: { path: "^server/backends/(fs|gcs)/", pathNot: "^server/backends/$1/" },
    },
    {
      name: "layers-stay-below-the-engine",
      severity: "error",
      comment:
        "Layers (codec, cache, metrics) wrap a Backend; they never reach the engine, the stack or the RPC edge " +
        "(a type-only import of a name, such as the breaker's states for a gauge, is no reach).",
      from: { path: "^server/(codec|cache|metrics|tracing)/" },
      to: { path: "^server/(engine|uploads|rpc|cli|auth|config)/|^server/(stack|server)\\.ts$", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "engine-below-rpc",
      severity: "error",
      comment: "The engine and the chain never import the RPC edge, the CLI, the assembly or the upload sessions built on them.",
      from: { path: "^server/engine/" },
      to: { path: "^server/(rpc|cli|uploads)/|^server/(stack|server)\\.ts$" },
    },
    {
      name: "uploads-below-rpc",
      severity: "error",
      comment: "Upload sessions sit on the engine and the local tier; they never import the RPC edge, the CLI or the assembly.",
      from: { path: "^server/uploads/" },
      to: { path: "^server/(rpc|cli)/|^server/(stack|server)\\.ts$" },
    },
    {
      name: "contracts-at-the-bottom",
      severity: "error",
      comment: "The contracts import nothing from the project but each other.",
      from: { path: "^server/(storage-error|signals|keys)\\.ts$|^server/backends/(backend|write-origin)\\.ts$" },
      to: { path: "^server/", pathNot: "^server/(storage-error|signals|keys)\\.ts$|^server/backends/(backend|write-origin)\\.ts$" },
    },
    {
      name: "client-never-imports-server",
      severity: "error",
      comment: "The client package depends on grpc-js, protobuf and the generated code only.",
      from: { path: "^client/src/" },
      to: { path: "^(server|test|bench)/" },
    },
    {
      name: "server-never-imports-tests",
      severity: "error",
      from: { path: "^(server|client/src)/" },
      to: { path: "^(test|bench)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["source", "import", "require", "node", "default"] },
  },
};
