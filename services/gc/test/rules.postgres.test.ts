import { postgresTestDb } from '@berth/testing/test-db';
import { rulesSuite } from './rules.suite.js';

rulesSuite('PostgreSQL', postgresTestDb);
