/**
 * Node flags the worker runs with wherever this repository starts it: the image's ENTRYPOINT
 * (Dockerfile) and the stage that fills its compile cache (node only reads a cache made with the
 * same flags), `npm start`, and the worker `npm run bench` measures.
 * test/deploy/runtimeFlags.test.ts keeps them in step.
 *
 * `--heap-growing-percent=50`: after each full GC, V8 lets the old generation grow to 1.5× what
 * survived, instead of a factor it picks itself (up to 4× when the collector keeps up easily,
 * which it does here). Under load the worker's live heap is 30–60 MB, but the default let the old
 * generation reach ~90 MB between collections and the process 205 MB of RSS. With 1.5× the
 * peak RSS is ~135 MB for a few percent more GC CPU (docs/PERFORMANCE.md, "Memory"). It is a
 * growth factor, not a limit: a bigger live set still gets a bigger heap, so this cannot cause
 * an out-of-memory exit that the default would not.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--heap-growing-percent=50'];
