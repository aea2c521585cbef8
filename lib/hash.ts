// xxhash-wasm is instantiated once per process (it compiles a WebAssembly module); every hash
// after that is synchronous. Call `initHashing()` before building a ring.

import xxhash from 'xxhash-wasm';
import { assert } from './assert';

type Hasher = Awaited<ReturnType<typeof xxhash>>;
let hasher: Hasher | undefined;

export async function initHashing(): Promise<void> {
  hasher ??= await xxhash();
}

/** The 64-bit xxhash of a UTF-8 string as an unsigned bigint: exact, no float rounding. */
export function hash64(text: string): bigint {
  assert(hasher !== undefined, 'initHashing() must complete before hashing');
  return hasher.h64(text);
}
