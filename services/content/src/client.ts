/**
 * @berth/content/client: how services and clients reach Content over gRPC. One implementation of the Write
 * protocol (`client/write-call.ts`) under both writers: `ContentClient.write` (a blob made as it streams,
 * committed when its digest is known: diff) and `ingest` (a blob of known descriptor, resumable and retried:
 * the pull).
 */
export { type ContentClient, contentOver, remoteContent } from './client/content-client.js';
export { type ContentNode, type IngestOptions, type IngestResult, type IngestSource, ingest } from './client/ingest.js';
export { type LocalRead, withLocalReads } from './client/local-reads.js';
export type { CallContext } from './client/write-call.js';
