import { postgresTestDb } from '@berth/testing/test-db';
import { metadataSuite } from './metadata.suite.js';

metadataSuite('PostgreSQL server', postgresTestDb);
