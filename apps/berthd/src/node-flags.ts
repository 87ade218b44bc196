/**
 * The Node.js flags every launch of berthd passes (its bin, the image's wrapper, the demo, the tests and the
 * benches; `test/deploy/artifacts.test.ts` checks each). They size V8's heap, which is fixed when the process
 * starts: `v8.setFlagsFromString` comes too late for them.
 *
 * `--max-semi-space-size=2`: V8 grows its young generation up to 2 × 16 MB for a burst of allocations (a pull
 * makes many small objects around the buffers it streams) and gives it back only when its memory reducer finds
 * the isolate idle, which a daemon answering periodic work seldom is: the committed heap then stays ~40 MB
 * above its live objects after a pull (soak test: heap total 34 → 75 MiB with 28 → 33 MiB used). Capped at
 * 2 × 2 MB, scavenges run more often over fewer survivors; the pull benchmarks show no cost (bench/README.md).
 */
export const berthdNodeFlags: readonly string[] = ['--max-semi-space-size=2'];
