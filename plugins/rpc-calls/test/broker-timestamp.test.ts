import { describe, expect, it } from 'vitest';
import { brokerTimestamp } from '../src/oslo.js';

// The stamp comes from message headers, which a publisher can set when the broker keeps existing
// stamps: anything but a plausible epoch time in ms is ignored (the tracer's clock is used then).
describe('broker timestamp_in_ms', () => {
  it('takes an AMQP long as amqplib decodes it, or a bigint or digit string', () => {
    expect(brokerTimestamp({ timestamp_in_ms: 1796380018220 })).toBe(1796380018220);
    expect(brokerTimestamp({ timestamp_in_ms: 1796380018220n })).toBe(1796380018220);
    expect(brokerTimestamp({ timestamp_in_ms: '1796380018220' })).toBe(1796380018220);
  });

  it('ignores what is not a time stamp in ms', () => {
    for (const v of [
      undefined,
      null,
      -1,
      0,
      1796380018, // seconds, not ms
      1796380018220.5,
      1e13,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '1796380018220x',
      ' 1796380018220',
      { valueOf: () => 1796380018220 },
      [1796380018220],
    ])
      expect(brokerTimestamp({ timestamp_in_ms: v })).toBeUndefined();
    expect(brokerTimestamp(undefined)).toBeUndefined();
    expect(brokerTimestamp('timestamp_in_ms')).toBeUndefined();
    expect(brokerTimestamp([1796380018220])).toBeUndefined();
  });
});
