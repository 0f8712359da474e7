// safetensors read/write (https://github.com/huggingface/safetensors, "Format" section):
//   [u64 little-endian N][N bytes of JSON header][data]
// The header maps tensor name -> {dtype, shape, data_offsets: [begin, end)} relative to the data
// section, plus an optional "__metadata__" string map. Tensors are read one at a time with
// positioned fs reads, so loading a checkpoint never holds the whole file in memory: only the
// float32 copy of the tensor being read, which the caller then owns.
import * as fs from 'fs';
import * as path from 'path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';

const ITEM_SIZE: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };

/** One header entry, with offsets made absolute in the file. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** absolute byte offset of the first byte in the file */
  start: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** A tensor as it leaves the reader: F32/F16/BF16 become float32, I32/I64 become int32. */
export interface LoadedTensor {
  name: string;
  dtype: 'float32' | 'int32';
  /** dtype stored in the file (before conversion) */
  fileDtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

// Header sizes above this are almost certainly a corrupt length prefix (the reference
// implementation uses the same 100 MB limit).
const MAX_HEADER_BYTES = 100_000_000;
// Node's fs.readSync cannot fill more than 2 GiB per call; read large tensors in pieces.
const READ_CHUNK = 1 << 28;

function fail(file: string, msg: string): never {
  throw new Error(`safetensors ${file}: ${msg}`);
}

/** Parse and validate the header of `file` without reading tensor data. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) fail(file, `file is ${fileSize} bytes, too short for the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
      fail(file, `header length ${headerLen} is impossible for a file of ${fileSize} bytes (truncated or not a safetensors file)`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    fs.readSync(fd, headerBuf, 0, headerLen, 8);
    let json: unknown;
    try {
      json = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      fail(file, `header is not valid JSON (${(e as Error).message})`);
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) fail(file, 'header JSON must be an object');
    const dataStart = 8 + headerLen;
    const dataSize = fileSize - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    const spans: [number, number, string][] = [];
    for (const [name, entry] of Object.entries(json as Record<string, any>)) {
      if (name === '__metadata__') {
        metadata = entry ?? {};
        continue;
      }
      const { dtype, shape, data_offsets } = entry ?? {};
      if (!(dtype in ITEM_SIZE)) {
        fail(file, `tensor "${name}" has dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(ITEM_SIZE).join(', ')}`);
      }
      if (!Array.isArray(shape) || !shape.every((d: unknown) => Number.isInteger(d) && (d as number) >= 0)) {
        fail(file, `tensor "${name}" has invalid shape ${JSON.stringify(shape)}`);
      }
      if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(Number.isInteger)) {
        fail(file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(data_offsets)}`);
      }
      const [begin, end] = data_offsets as [number, number];
      const numel = (shape as number[]).reduce((a, b) => a * b, 1);
      const expected = numel * ITEM_SIZE[dtype as SafetensorsDtype];
      if (end - begin !== expected) {
        fail(file, `tensor "${name}" ${dtype}${JSON.stringify(shape)} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
      }
      if (begin < 0 || end > dataSize) {
        fail(file, `tensor "${name}" data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes; file truncated?)`);
      }
      spans.push([begin, end, name]);
      tensors.set(name, { name, dtype, shape, start: dataStart + begin, byteLength: expected });
    }
    // The format requires the data section to be exactly covered, without holes or overlaps.
    spans.sort((a, b) => a[0] - b[0]);
    let cursor = 0;
    for (const [begin, end, name] of spans) {
      if (begin !== cursor) fail(file, `tensor "${name}" starts at data offset ${begin}, expected ${cursor} (overlapping or non-contiguous tensors)`);
      cursor = end;
    }
    if (cursor !== dataSize) fail(file, `tensors cover ${cursor} data bytes but the data section has ${dataSize}`);
    return { file, tensors, metadata };
  } finally {
    fs.closeSync(fd);
  }
}

function readBytes(fd: number, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.length) {
    const n = fs.readSync(fd, target, done, Math.min(READ_CHUNK, target.length - done), position + done);
    if (n === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

// ---------------------------------------------------------------------------------------------
// float conversions

/** bf16 -> f32 is a 16-bit left shift of the bit pattern. */
export function bf16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return dst;
}

/** f32 -> bf16 with round-to-nearest-even (as torch's .to(bfloat16)); NaN stays NaN. */
export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
      out[i] = (b >>> 16) | 0x40; // quiet NaN
    } else {
      out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return out;
}

/** IEEE half -> f32, exact (every half is representable). */
export function f16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) dst[i] = sign * frac * 2 ** -24; // subnormal
    else if (exp === 31) dst[i] = frac ? NaN : sign * Infinity;
    else dst[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return dst;
}

/** f32 -> IEEE half with round-to-nearest-even; overflow goes to ±Infinity. */
export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      // subnormal half (or zero): shift the full 24-bit significand into place, round to even
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
    } else {
      let half = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: correct
      out[i] = sign | half;
    }
  }
  return out;
}

/** Read one tensor of an already-parsed header, converting to float32 / int32. */
export function readTensor(header: SafetensorsHeader, name: string, fd?: number): LoadedTensor {
  const info = header.tensors.get(name);
  if (!info) fail(header.file, `no tensor named "${name}"`);
  const ownFd = fd === undefined;
  const handle = ownFd ? fs.openSync(header.file, 'r') : fd;
  try {
    const numel = info.shape.reduce((a, b) => a * b, 1);
    const { fileDtype, shape } = { fileDtype: info.dtype, shape: info.shape };
    try {
      switch (info.dtype) {
        case 'F32': {
          const data = new Float32Array(numel);
          readBytes(handle, new Uint8Array(data.buffer), info.start);
          return { name, dtype: 'float32', fileDtype, shape, data };
        }
        case 'I32': {
          const data = new Int32Array(numel);
          readBytes(handle, new Uint8Array(data.buffer), info.start);
          return { name, dtype: 'int32', fileDtype, shape, data };
        }
        case 'BF16':
        case 'F16': {
          const raw = new Uint16Array(numel);
          readBytes(handle, new Uint8Array(raw.buffer), info.start);
          const data = info.dtype === 'BF16' ? bf16ToF32(raw) : f16ToF32(raw);
          return { name, dtype: 'float32', fileDtype, shape, data };
        }
        case 'I64': {
          const raw = new BigInt64Array(numel);
          readBytes(handle, new Uint8Array(raw.buffer), info.start);
          const data = new Int32Array(numel);
          for (let i = 0; i < numel; i++) {
            const v = raw[i];
            if (v > 2147483647n || v < -2147483648n) fail(header.file, `tensor "${name}" I64 value ${v} at index ${i} does not fit in int32`);
            data[i] = Number(v);
          }
          return { name, dtype: 'int32', fileDtype, shape, data };
        }
      }
      throw new Error(`unknown dtype ${info.dtype}`);
    } catch (e) {
      if ((e as Error).message.startsWith('safetensors ')) throw e;
      return fail(header.file, `reading tensor "${name}": ${(e as Error).message}`);
    }
  } finally {
    if (ownFd) fs.closeSync(handle);
  }
}

/** Iterate over all tensors of a file in storage order, one at a time. */
export function* iterateSafetensors(file: string, names?: Iterable<string>): Generator<LoadedTensor> {
  const header = readSafetensorsHeader(file);
  const order = names ? [...names] : [...header.tensors.values()].sort((a, b) => a.start - b.start).map((t) => t.name);
  const fd = fs.openSync(file, 'r');
  try {
    for (const name of order) yield readTensor(header, name, fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Read every tensor of a (small) file into a Map. For checkpoints prefer `iterateSafetensors`. */
export function loadSafetensors(file: string): Map<string, LoadedTensor> {
  const out = new Map<string, LoadedTensor>();
  for (const t of iterateSafetensors(file)) out.set(t.name, t);
  return out;
}

// ---------------------------------------------------------------------------------------------
// writing

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** the values, or a function producing them when the writer reaches this tensor (streaming) */
  data: Float32Array | Int32Array | (() => Float32Array | Int32Array);
  /** storage dtype; defaults to F32 (I32 when `data` is an Int32Array) */
  dtype?: SafetensorsDtype;
}

function defaultDtype(t: TensorToWrite): SafetensorsDtype {
  return t.dtype ?? (t.data instanceof Int32Array ? 'I32' : 'F32');
}

function encodeData(t: TensorToWrite, values: Float32Array | Int32Array): Uint8Array {
  const dtype = defaultDtype(t);
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (values.length !== numel) {
    throw new Error(`writeSafetensors: tensor "${t.name}" has ${values.length} values but shape ${JSON.stringify(t.shape)} needs ${numel}`);
  }
  const isInt = values instanceof Int32Array;
  if (isInt !== (dtype === 'I32' || dtype === 'I64')) {
    throw new Error(`writeSafetensors: tensor "${t.name}" has ${isInt ? 'int32' : 'float32'} data but dtype ${dtype}`);
  }
  const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (dtype) {
    case 'F32':
    case 'I32':
      return asBytes(values);
    case 'BF16':
      return asBytes(f32ToBf16(values as Float32Array));
    case 'F16':
      return asBytes(f32ToF16(values as Float32Array));
    case 'I64':
      return asBytes(BigInt64Array.from(values as Int32Array, (v) => BigInt(v)));
  }
}

/**
 * Write tensors to `file` atomically (temp file + rename). A tensor's `data` may be a function so
 * that values are produced (e.g. downloaded from a GPU) only when that tensor is written: the
 * header needs only names, shapes and dtypes.
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): void {
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata "${k}" must be a string (the format allows only strings), got ${typeof v}`);
  }
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name in header) throw new Error(`writeSafetensors: tensor name "${t.name}" appears twice`);
    const dtype = defaultDtype(t);
    if (!(dtype in ITEM_SIZE)) throw new Error(`writeSafetensors: tensor "${t.name}" has unknown dtype ${dtype}`);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[dtype];
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces to a multiple of 8 so the data section is aligned (as the
  // reference writer does).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, headerBytes);
    for (const t of tensors) {
      const bytes = encodeData(t, typeof t.data === 'function' ? t.data() : t.data);
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(fd, bytes, done, Math.min(READ_CHUNK, bytes.length - done));
    }
    fs.closeSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.renameSync(tmp, file);
}
