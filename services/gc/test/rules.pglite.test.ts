import { openDb } from '@berth/common/db';
import { rulesSuite } from './rules.suite.js';

rulesSuite('PGlite', async () => {
  const db = await openDb('pglite://memory');
  return { db, drop: () => db.close() };
});
