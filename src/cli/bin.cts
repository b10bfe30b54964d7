#!/usr/bin/env -S node --max-semi-space-size=4
// The `socksmith` command. CommonJS on purpose: UV_THREADPOOL_SIZE must be in the environment
// before libuv starts its thread pool, and loading an ES module already starts it (the ESM loader
// reads files through the pool), so an ES entry point would set it too late. Name lookups run on
// that pool (net/lookup-scheduler.ts); libuv's default of 4 threads allows only 2 at a time.
// --max-semi-space-size=4: a small young generation keeps idle connections cheap (docs/cli.md, "Node flags and the environment").
process.env.UV_THREADPOOL_SIZE ??= '16'
void import('./main.js')
