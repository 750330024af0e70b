/**
 * The glibc malloc settings `npm start` launches the daemon with: glibc
 * otherwise mmaps every allocation of 128 KiB or more and unmaps it on free,
 * which costs grpc-js streams a third of their speed on these machines
 * (DESIGN.md, performance notes). glibc reads them once, at process start,
 * so they go into a child's environment.
 */
export const MALLOC_TUNING: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: "67108864",
  MALLOC_TRIM_THRESHOLD_: "134217728",
};
