import { openDb } from '@berth/common/db';
import { metadataSuite } from './metadata.suite.js';

metadataSuite('PGlite (embedded)', async () => {
  const db = await openDb('pglite://memory');
  return { db, drop: () => db.close() };
});
