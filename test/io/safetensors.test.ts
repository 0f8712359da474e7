// safetensors: round trips for every dtype, conversions checked against hand-computed bit
// patterns, and clear errors for corrupt files.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  iterateSafetensors,
  loadSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from '../../lib/io/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A file written by hand: [u64 header length][header][data]. */
function rawFile(name: string, header: unknown, data: Uint8Array | number, headerText?: string): string {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.concat([len, json, typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data)]));
  return file;
}

describe('float conversions', () => {
  it('bf16 rounds to nearest even and round-trips exactly', () => {
    // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0 (0x3f80)
    // 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625: ties to even -> 0x3f82
    const x = Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 1e-40, Infinity, 3.4e38]);
    const b = f32ToBf16(x);
    expect(Array.from(b.slice(0, 4))).toEqual([0x3f80, 0x3f80, 0x3f82, 0xc020]);
    expect(b[5]).toBe(0x7f80);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.from([NaN])))[0])).toBe(true);
    const back = bf16ToF32(b);
    expect(Array.from(f32ToBf16(back))).toEqual(Array.from(b)); // idempotent
  });

  it('f16 matches IEEE half bit patterns, including subnormals and overflow', () => {
    const x = Float32Array.from([1, -2, 0.1, 65504, 65520, 2 ** -24, 2 ** -25, 1.5 * 2 ** -24, 6.1035156e-5, 0]);
    const h = f32ToF16(x);
    // 0.1 -> 0x2e66; 65520 rounds up to Infinity; 2^-25 ties to even (0); 1.5*2^-24 ties to 2^-23
    expect(Array.from(h)).toEqual([0x3c00, 0xc000, 0x2e66, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0002, 0x0400, 0x0000]);
    const back = f16ToF32(h);
    expect(back[2]).toBe(Math.fround(0.0999755859375));
    expect(back[4]).toBe(Infinity);
    expect(back[5]).toBe(2 ** -24);
  });
});

describe('write / read round trip', () => {
  it('keeps names, shapes, metadata and values for every dtype', () => {
    const values = Float32Array.from({ length: 24 }, (_, i) => (i - 12) * 0.37);
    const ints = Int32Array.from({ length: 6 }, (_, i) => i * 1000 - 2500);
    const file = path.join(tmp, 'all.safetensors');
    writeSafetensors(
      file,
      [
        { name: 'f32', shape: [2, 3, 4], data: values },
        { name: 'bf16', shape: [24], data: values, dtype: 'BF16' },
        { name: 'f16', shape: [4, 6], data: () => values, dtype: 'F16' },
        { name: 'i32', shape: [2, 3], data: ints },
        { name: 'i64', shape: [6], data: ints, dtype: 'I64' },
        { name: 'empty', shape: [0, 3], data: new Float32Array(0) },
      ],
      { format: 'pt', note: 'test' },
    );
    const header = readSafetensorsHeader(file);
    expect(header.metadata).toEqual({ format: 'pt', note: 'test' });
    // data section aligned to 8 bytes
    expect((8n + fs.readFileSync(file).readBigUInt64LE(0)) % 8n).toBe(0n);
    const t = loadSafetensors(file);
    expect(t.get('f32')!.shape).toEqual([2, 3, 4]);
    expect(Array.from(t.get('f32')!.data)).toEqual(Array.from(values));
    expect(Array.from(t.get('bf16')!.data)).toEqual(Array.from(bf16ToF32(f32ToBf16(values))));
    expect(Array.from(t.get('f16')!.data)).toEqual(Array.from(f16ToF32(f32ToF16(values))));
    expect(t.get('bf16')!.fileDtype).toBe('BF16');
    expect(t.get('i32')!.dtype).toBe('int32');
    expect(Array.from(t.get('i32')!.data)).toEqual(Array.from(ints));
    expect(Array.from(t.get('i64')!.data)).toEqual(Array.from(ints));
    expect(t.get('empty')!.shape).toEqual([0, 3]);
    // iteration is lazy and in storage order
    expect([...iterateSafetensors(file)].map((x) => x.name)).toEqual(['f32', 'bf16', 'f16', 'i32', 'i64', 'empty']);
  });

  it('refuses data that does not fit the shape or the dtype', () => {
    expect(() => writeSafetensors(path.join(tmp, 'bad.safetensors'), [{ name: 'w', shape: [2, 2], data: new Float32Array(3) }])).toThrow(
      'writeSafetensors: tensor "w" has 3 values but shape [2,2] needs 4',
    );
    expect(fs.existsSync(path.join(tmp, 'bad.safetensors'))).toBe(false); // atomic: nothing left behind
    const w = { name: 'w', shape: [1], data: new Float32Array(1) };
    expect(() => writeSafetensors(path.join(tmp, 'dup.safetensors'), [w, w])).toThrow('writeSafetensors: tensor name "w" appears twice');
    expect(() => writeSafetensors(path.join(tmp, 'meta.safetensors'), [w], { step: 3 as unknown as string })).toThrow(/metadata "step" must be a string/);
    expect(fs.readdirSync(tmp).some((f) => f.includes('.tmp-'))).toBe(false);
  });
});

describe('corrupt files give errors naming the file and tensor', () => {
  const good = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  it('truncated data', () => {
    const file = rawFile('truncated.safetensors', good, 12);
    expect(() => readSafetensorsHeader(file)).toThrow(/truncated\.safetensors: tensor "w" data_offsets \[0, 16\] run past the end of the data section \(12 bytes; file truncated\?\)/);
  });
  it('file shorter than the header length prefix', () => {
    const file = path.join(tmp, 'tiny.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expect(() => readSafetensorsHeader(file)).toThrow(/tiny\.safetensors: file is 3 bytes/);
  });
  it('header length beyond the file', () => {
    const file = path.join(tmp, 'badlen.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    fs.writeFileSync(file, b);
    expect(() => readSafetensorsHeader(file)).toThrow(/badlen\.safetensors: header length 1000 is impossible for a file of 16 bytes/);
  });
  it('header that is not JSON', () => {
    const file = rawFile('badjson.safetensors', null, 0, '{"w": {"dtype": "F32",');
    expect(() => readSafetensorsHeader(file)).toThrow(/badjson\.safetensors: header is not valid JSON/);
  });
  it('unknown dtype', () => {
    const file = rawFile('dtype.safetensors', { w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, 4);
    expect(() => readSafetensorsHeader(file)).toThrow(/dtype\.safetensors: tensor "w" has dtype "F8_E4M3"; supported: F32, F16, BF16, I32, I64/);
  });
  it('shape and byte length that disagree', () => {
    const file = rawFile('shape.safetensors', { w: { dtype: 'F32', shape: [3, 2], data_offsets: [0, 16] } }, 16);
    expect(() => readSafetensorsHeader(file)).toThrow(/shape\.safetensors: tensor "w" F32\[3,2\] needs 24 bytes but data_offsets \[0, 16\] span 16/);
  });
  it('overlapping or non-contiguous tensors', () => {
    const file = rawFile(
      'gap.safetensors',
      { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } },
      12,
    );
    expect(() => readSafetensorsHeader(file)).toThrow(/gap\.safetensors: tensor "b" starts at data offset 8, expected 4/);
  });
  it('I64 values outside int32', () => {
    const data = new BigInt64Array([1n, 1n << 40n]);
    const file = rawFile('i64.safetensors', { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(data.buffer));
    expect(() => loadSafetensors(file)).toThrow(/i64\.safetensors: tensor "ids" I64 value 1099511627776 at index 1 does not fit in int32/);
  });
});
