/* global module */
// sockgate bench only: the benchmark client's WebSocket masking, 4 bytes at a time. ws masks every client frame
// byte by byte in JS when the native `bufferutil` is absent (about 0.4 GB/s here), which made the client, not the
// relay, the bottleneck of uploads. ws loads this through NODE_PATH as if it were bufferutil; the masks stay the
// random per-frame keys RFC 6455 asks for, so every relay still unmasks real data. Relays never see this module.
'use strict';

/** XOR buf[start, start + length) with the 4-byte mask, mask[0] applying to buf[start]. */
function xor(buf, start, length, mask) {
  let i = 0;
  const at = buf.byteOffset + start;
  const head = Math.min(length, (4 - (at & 3)) & 3);
  for (; i < head; i++) buf[start + i] ^= mask[i & 3];
  const words = (length - head) >>> 2;
  if (words > 0) {
    // Little-endian word of the mask bytes that line up with this aligned position.
    const m = (mask[head & 3] | (mask[(head + 1) & 3] << 8) | (mask[(head + 2) & 3] << 16) | (mask[(head + 3) & 3] << 24)) >>> 0;
    const u32 = new Uint32Array(buf.buffer, at + head, words);
    for (let w = 0; w < words; w++) u32[w] ^= m;
    i += words * 4;
  }
  for (; i < length; i++) buf[start + i] ^= mask[i & 3];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

module.exports = {
  mask(source, mask, output, offset, length) {
    output.set(length === source.length ? source : source.subarray(0, length), offset);
    if (LITTLE_ENDIAN) xor(output, offset, length, mask);
    else for (let i = 0; i < length; i++) output[offset + i] ^= mask[i & 3];
  },
  unmask(buffer, mask) {
    if (LITTLE_ENDIAN) xor(buffer, 0, buffer.length, mask);
    else for (let i = 0; i < buffer.length; i++) buffer[i] ^= mask[i & 3];
  },
};
