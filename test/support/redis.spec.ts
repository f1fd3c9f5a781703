import { spawnSync } from 'node:child_process';
import { startTestRedis } from './redis';

it('starts a private redis-server that answers and stops', async () => {
  const redis = await startTestRedis();
  const ping = spawnSync('redis-cli', ['-u', redis.url, 'ping'], { encoding: 'utf8' });
  expect(ping.stdout.trim()).toBe('PONG');
  await redis.stop();
  const after = spawnSync('redis-cli', ['-u', redis.url, 'ping'], { encoding: 'utf8' });
  expect(after.stdout.trim()).not.toBe('PONG');
});
