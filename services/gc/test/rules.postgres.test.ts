import { openDb } from '@berth/common/db';
import { usePostgres } from '@berth/testing/postgres';
import { rulesSuite } from './rules.suite.js';

rulesSuite('PostgreSQL', async () => {
  const pg = await usePostgres();
  const db = await openDb(pg.url);
  return {
    db,
    drop: async () => {
      await db.close();
      await pg.drop();
    },
  };
});
