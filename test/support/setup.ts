import { initHashing } from '../../lib/hash';

beforeAll(async () => {
  await initHashing();
});
