import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { PGlite } from '@electric-sql/pglite';

if (process.env.V8F) v8.setFlagsFromString(process.env.V8F);
const rss = (l) => {
  const s = readFileSync('/proc/self/status', 'utf8');
  const g = (k) => (s.match(new RegExp(k + ':\\s+(\\d+)'))[1] / 1024) | 0;
  console.log(l, 'rss', g('VmRSS'), 'hwm', g('VmHWM'));
};
const pg = await PGlite.create(process.argv[2], {
  startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'],
});
rss('open');
await pg.exec('create table if not exists t2(a int primary key, b text)');
const t = performance.now();
for (let i = 0; i < 3000; i++) {
  await pg.query('insert into t2 values ($1, $2) on conflict (a) do update set b = excluded.b', [
    i % 500,
    'x'.repeat(100),
  ]);
  await pg.query('select * from t2 where a = $1', [i % 500]);
}
console.log('6000 queries ms', (performance.now() - t) | 0);
rss('work');
await pg.close();
process.exit(0);
