/** The daemon's version, reported by GetStats. */
import { version } from "../package.json";

export const VERSION: string = version;
