import { openDb } from '@berth/common/db';
import { racesSuite } from './races.suite.js';

racesSuite('PGlite', async () => {
  const db = await openDb('pglite://memory');
  return { db, drop: () => db.close() };
});
