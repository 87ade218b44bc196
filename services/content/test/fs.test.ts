import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@berth/testing/tmp';
import { contentSuite } from './content.suite.js';

contentSuite('filesystem backend', async () => {
  const dir = tempDir('berth-content-fs-');
  return {
    config: { kind: 'fs', root: dir.path },
    committedBlobs: async () => readdir(join(dir.path, 'blobs', 'sha256')).catch(() => []),
    teardown: () => dir.remove(),
  };
});
