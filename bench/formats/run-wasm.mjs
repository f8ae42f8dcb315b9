//! Runs the `formats` benchmark built for wasm32-wasip1 under node's WASI (preview1), so the
//! table is measured on V8, where the filter runs. Build it first:
//!
//!     cargo build --release -p registry-gate-bench-formats --target wasm32-wasip1
//!     node --single-threaded bench/formats/run-wasm.mjs [path/to/formats.wasm]
//!
//! (`--single-threaded`: node 20's V8 segfaults in a background thread now and then on this
//! run's 100 MiB guest; one thread is also how an Envoy worker runs its VM.)
//!
//! (If fst or rkyv ever stops building for wasm32-wasip1, build with
//! `--no-default-features --features fst` or `--features rkyv`: the table then says which
//! format is not in the build.) The guest cannot read /proc, so this passes the CPU model and
//! the runtime as FORMATS_CPU and FORMATS_RUNTIME, and passes FORMATS_QUERIES,
//! FORMATS_OPEN_ROUNDS and FORMATS_BUILD_ROUNDS through to lower the work.

import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { WASI } from 'node:wasi';

const here = dirname(fileURLToPath(import.meta.url));
const wasmPath =
  process.argv[2] ?? join(here, '..', '..', 'target', 'wasm32-wasip1', 'release', 'formats.wasm');

function cpu() {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8').split('\n');
    const model = info.find((line) => line.startsWith('model name'))?.split(':')[1]?.trim();
    const cpus = info.filter((line) => line.startsWith('processor')).length;
    return `${model ?? 'unknown'} (${cpus} CPUs online)`;
  } catch {
    return 'unknown (no /proc/cpuinfo)';
  }
}

const env = {
  FORMATS_CPU: cpu(),
  FORMATS_RUNTIME: `node ${process.version} (V8 ${process.versions.v8}), node:wasi preview1`,
};
for (const knob of ['FORMATS_QUERIES', 'FORMATS_OPEN_ROUNDS', 'FORMATS_BUILD_ROUNDS']) {
  if (process.env[knob] !== undefined) env[knob] = process.env[knob];
}

let bytes;
try {
  bytes = await readFile(wasmPath);
} catch (error) {
  console.error(`cannot read ${wasmPath} (${error.code ?? error}): build it with`);
  console.error('  cargo build --release -p registry-gate-bench-formats --target wasm32-wasip1');
  process.exit(2);
}

// Measure optimized code only (a long-running Envoy worker's steady state): compile every
// function with TurboFan up front instead of Liftoff first and tiering up while timed.
if (process.env.FORMATS_LIFTOFF === undefined) {
  setFlagsFromString('--no-liftoff');
  setFlagsFromString('--no-wasm-tier-up');
}

const wasi = new WASI({ version: 'preview1', args: ['formats'], env, returnOnExit: true });
const module = await WebAssembly.compile(bytes);
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
const code = wasi.start(instance);
console.error(`guest memory: ${(instance.exports.memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB`);
process.exit(code);
