/**
 * Where the benchmark's files are, shared by the modules under `bench/`
 * without importing each other.
 */
import { fileURLToPath } from 'node:url';

/** The repository root (these files run from `dist/bench/`). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
