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
 *
 * `--initial-old-space-size=96`: V8 starts a full collection once the old generation's objects plus the external
 * memory allocated since the last full collection reach its limit, which it sets only ~10 MB above a small
 * heap's live size. A pull keeps 30–60 MB of chunk buffers in flight (read, decompressed, queued for tar and
 * the digest), and their ups and downs alone crossed that line every ~40 ms: ~100 full collections per 500 MiB
 * layer, ~3 s of the collector's threads' CPU. Configured, the size is also the limit's floor (V8: "allow V8
 * to skip full GCs below that threshold"): 22 instead of ~220 over two big-blob pulls, 3.4–3.9 instead of
 * 6.3 s of CPU each. Idle, the daemon still collects (`returnMemoryWhenIdle`): resident memory 15 and 25 s after
 * start is the same as without it.
 */
export const berthdNodeFlags: readonly string[] = ['--max-semi-space-size=2', '--initial-old-space-size=96'];
