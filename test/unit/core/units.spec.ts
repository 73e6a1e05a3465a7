import t from 'tap'
import {
  parseSize, formatBytes, parseDuration, formatDuration, parseBandwidth, formatBandwidth, UnitError
} from '../../../core/units.ts'

const K = 1024
const M = 1024 ** 2
const G = 1024 ** 3

t.test('parseSize: binary units, any spelling', async t => {
  const cases: Array<[string | number, number]> = [
    ['512M', 512 * M], ['512m', 512 * M], ['512MiB', 512 * M], ['512Mi', 512 * M], ['512MB', 512 * M],
    ['1G', G], ['1.5G', 1.5 * G], ['1.5GiB', 1.5 * G], ['0.5g', 512 * M],
    ['64MiB', 64 * M], ['1024K', M], ['1024k', M], ['4KiB', 4 * K], ['1T', 1024 ** 4],
    ['4096', 4096], ['100B', 100], ['0', 0], [' 2G ', 2 * G], ['2 G', 2 * G],
    [536870912, 512 * M], [0, 0]
  ]
  for (const [input, bytes] of cases) t.equal(parseSize(input), bytes, `${JSON.stringify(input)} → ${bytes}`)
})

t.test('parseSize: rejects what is not a size, with a readable message', async t => {
  t.throws(() => parseSize('12 potatoes'), { message: "expected a size like 512M, got '12 potatoes'" })
  t.throws(() => parseSize('12X'), { message: "expected a size like 512M, got '12X' (unknown unit 'x'; use K, M, G or T)" })
  for (const bad of ['', 'M', '-1M', '1,5G', '1.1', '0.3K', 'lots', '1e3', '1G1', '9999999999T']) {
    t.throws(() => parseSize(bad), UnitError, `'${bad}' is rejected`)
  }
  for (const bad of [-1, 1.5, Number.NaN, Infinity]) t.throws(() => parseSize(bad), UnitError, `${bad} is rejected`)
  const err = t.throws(() => parseSize('nope')) as UnitError
  t.equal(err.code, 'SC_BAD_UNIT')
})

t.test('formatBytes: shortest exact text', async t => {
  t.equal(formatBytes(536870912), '512M')
  t.equal(formatBytes(G), '1G')
  t.equal(formatBytes(1.5 * G), '1.5G')
  t.equal(formatBytes(64 * M), '64M')
  t.equal(formatBytes(M), '1M')
  t.equal(formatBytes(4 * K), '4K')
  t.equal(formatBytes(1024 ** 4 * 2), '2T')
  t.equal(formatBytes(100), '100B')
  t.equal(formatBytes(0), '0B')
  t.equal(formatBytes(1000000), '1000000B', 'no inexact rounding')
  t.equal(formatBytes(1000000, { approximate: true }), '976.6K')
  t.equal(formatBytes(1.25 * G, { approximate: true }), '1.3G')
})

t.test('sizes round-trip', async t => {
  const values = [0, 1, 512, 1023, 1024, 1536, 4096, 1000000, 123456789, 64 * M, 192 * M, 1.5 * G, 1.125 * G, 3 * G + 7, 2 ** 40, 2 ** 50 + 12345]
  for (const v of values) t.equal(parseSize(formatBytes(v)), v, `${v} via ${formatBytes(v)}`)
  for (const s of ['512M', '1.5G', '64M', '1K', '3T', '100B']) t.equal(formatBytes(parseSize(s)), s)
})

t.test('parseDuration', async t => {
  const cases: Array<[string | number, number]> = [
    ['5ms', 5], ['2s', 2000], ['100us', 0.1], ['100µs', 0.1], ['250ns', 0.00025], ['1.5s', 1500],
    ['1m', 60000], ['2min', 120000], ['1h', 3600000], ['0', 0], ['7', 7], [12, 12], [0.5, 0.5], ['5 ms', 5]
  ]
  for (const [input, ms] of cases) t.ok(Math.abs(parseDuration(input) - ms) < 1e-12, `${JSON.stringify(input)} → ${ms}`)
  t.throws(() => parseDuration('5 parsecs'), { message: "expected a duration like 5ms, got '5 parsecs'" })
  for (const bad of ['', 'ms', '-5ms', '5d', 'soon']) t.throws(() => parseDuration(bad), UnitError, `'${bad}' is rejected`)
  t.throws(() => parseDuration(-1), UnitError)
})

t.test('formatDuration and round-trip', async t => {
  t.equal(formatDuration(5), '5ms')
  t.equal(formatDuration(2000), '2s')
  t.equal(formatDuration(0.1), '100us')
  t.equal(formatDuration(1500), '1.5s')
  t.equal(formatDuration(60000), '1m')
  t.equal(formatDuration(3600000), '1h')
  t.equal(formatDuration(0), '0ms')
  t.equal(formatDuration(0.00025), '250ns')
  for (const s of ['5ms', '2s', '100us', '1.5s', '1m', '1h', '250ns', '12.5ms']) t.equal(formatDuration(parseDuration(s)), s)
  for (const v of [0.001, 0.1, 1, 5, 12.5, 999, 1000, 1234, 90000]) {
    t.ok(Math.abs(parseDuration(formatDuration(v)) - v) < 1e-9, `${v} via ${formatDuration(v)}`)
  }
})

t.test('parseBandwidth: bits per second, decimal multipliers', async t => {
  const cases: Array<[string | number, number]> = [
    ['200mbit', 200e6], ['200Mbit', 200e6], ['200M', 200e6], ['200m', 200e6], ['1gbit', 1e9], ['1G', 1e9],
    ['1.5gbit', 1.5e9], ['64kbit', 64000], ['64k', 64000], ['1tbit', 1e12], ['9600bit', 9600], ['9600', 9600], [1000, 1000]
  ]
  for (const [input, bps] of cases) t.equal(parseBandwidth(input), bps, `${JSON.stringify(input)} → ${bps}`)
  t.throws(() => parseBandwidth('200mbps'), { message: "expected a bandwidth like 200mbit, got '200mbps' ('mbps' is ambiguous; write 200mbit for bits per second)" })
  for (const bad of ['', 'fast', '200MB', '200 furlongs', '-1mbit', '0.5bit']) t.throws(() => parseBandwidth(bad), UnitError, `'${bad}' is rejected`)
  t.throws(() => parseBandwidth(1.5), UnitError)
})

t.test('formatBandwidth and round-trip', async t => {
  t.equal(formatBandwidth(200e6), '200mbit')
  t.equal(formatBandwidth(1e9), '1gbit')
  t.equal(formatBandwidth(1.5e9), '1.5gbit')
  t.equal(formatBandwidth(64000), '64kbit')
  t.equal(formatBandwidth(999), '999bit')
  t.equal(formatBandwidth(0), '0bit')
  for (const v of [0, 1, 999, 1000, 1234, 64000, 1234567, 200e6, 1e9, 2.5e9, 1e12]) t.equal(parseBandwidth(formatBandwidth(v)), v, `${v} via ${formatBandwidth(v)}`)
  for (const s of ['200mbit', '1gbit', '64kbit', '1.5gbit']) t.equal(formatBandwidth(parseBandwidth(s)), s)
})
