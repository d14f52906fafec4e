import type { ReportView } from '@scalpels/core';

const MESSAGES = ['rpc.calls', 'rpc.casts', 'rpc.fanouts', 'rpc.notifications'] as const;
const FAILED = ['rpc.failures', 'rpc.timeouts'] as const;

/** Methods by messages sent, with call latency quantiles; the broker port's traffic. */
export const view: ReportView = {
  title: 'RPC over the message bus',
  headline: [
    { label: 'RPC messages', series: MESSAGES },
    { label: 'RPC calls', series: 'rpc.calls' },
    { label: 'RPC failures', series: FAILED },
    { label: 'RPC bytes', series: 'rpc.bytes' },
    { label: 'RPC p95 latency', series: 'rpc.latency', of: 'p95' },
  ],
  tables: [
    {
      title: 'Methods, by messages',
      key: ['method'],
      columns: [
        { label: 'messages', series: MESSAGES },
        { label: 'calls', series: 'rpc.calls' },
        { label: 'casts', series: ['rpc.casts', 'rpc.fanouts'] },
        { label: 'failures', series: FAILED },
        { label: 'p50', series: 'rpc.latency', of: 'p50' },
        { label: 'p95', series: 'rpc.latency', of: 'p95' },
        { label: 'p99', series: 'rpc.latency', of: 'p99' },
        { label: 'bytes', series: 'rpc.bytes' },
      ],
    },
    {
      title: 'Broker traffic',
      key: ['port', 'direction'],
      columns: [
        { label: 'bytes', series: 'rpc.traffic.bytes' },
        { label: 'packets', series: 'rpc.traffic.packets' },
      ],
    },
  ],
  histograms: { 'rpc.latency': { boundUnit: 'ms', cumulative: true } },
};
