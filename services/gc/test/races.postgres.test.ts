import { openDb } from '@berth/common/db';
import { usePostgres } from '@berth/testing/postgres';
import { racesSuite } from './races.suite.js';

racesSuite('PostgreSQL', async () => {
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
