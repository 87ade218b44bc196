import { openDb } from '@berth/common/db';
import { usePostgres } from '@berth/testing/postgres';
import { metadataSuite } from './metadata.suite.js';

metadataSuite('PostgreSQL server', async () => {
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
