import { postgresTestDb } from '@berth/testing/test-db';
import { racesSuite } from './races.suite.js';

racesSuite('PostgreSQL', postgresTestDb);
