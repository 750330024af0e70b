/**
 * The rights an access entry can grant, and which RPCs need which. A handler
 * declares the right it needs when it calls the authorizer; a new admin RPC
 * (GetUsage, Verify, Flush, ...) declares `admin` and nothing else changes.
 *
 * | right  | RPCs                                   |
 * |--------|----------------------------------------|
 * | read   | Retrieve, RetrieveStream, Stat, Exists   |
 * | write  | Store, StoreStream, QueryUpload          |
 * | delete | Delete, DeleteMany                       |
 * | list   | ListKeys                                 |
 * | admin  | GetStats, Flush, Verify, every admin RPC |
 */
export const RIGHTS = ["read", "write", "delete", "list", "admin"] as const;

export type Right = (typeof RIGHTS)[number];

/** What the older `{"token": [prefixes]}` form grants: everything but admin. */
export const LEGACY_RIGHTS: readonly Right[] = ["read", "write", "delete", "list"];
