// Private redis-server instances for the tests here (a store a test can kill and restart). One
// implementation, in the core's test helpers, so that the core's own Redis tests share it: test/
// may import the core, the core never imports test/.
export {
  hasRedisServer,
  privateRedisServers,
  sharedRedis,
  type SharedRedis,
  type PrivateRedis,
  type PrivateRedisOptions,
} from '../core/src/store/redis.test-helpers.js';
