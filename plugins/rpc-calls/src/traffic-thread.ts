/** Worker-thread entry of the traffic sampler: samples on request from the main thread. */
import { parentPort, workerData } from 'node:worker_threads';
import {
  trafficSampler,
  type TrafficThreadData,
  type TrafficThreadMessage,
} from './traffic-sampler.js';

const port = parentPort!;
const data = workerData as TrafficThreadData;
const post = (m: TrafficThreadMessage): void => port.postMessage(m);

const sample = await trafficSampler(
  data.traffic,
  () => data.ownPorts,
  (line) => post({ kind: 'line', line }),
  (message) => post({ kind: 'error', message }),
).catch((e: Error) => {
  post({ kind: 'error', message: e.message });
  return async () => undefined;
});

// Samples run one at a time, in the order asked.
let queue = Promise.resolve();
port.on('message', () => {
  queue = queue.then(async () => {
    await sample();
    post({ kind: 'sampled' });
  });
});
