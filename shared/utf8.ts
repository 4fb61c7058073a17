const encoder = new TextEncoder();
// PROTOCOL 3.3: invalid UTF-8 in a reason is replaced, never an error. ignoreBOM: a leading U+FEFF is text to
// keep, not a byte-order mark to strip (stripping it made decode(encode(reason)) lose a character).
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

export function utf8Decode(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Cut text so that its UTF-8 form fits in maxBytes, never splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): Uint8Array {
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  // Back up over continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** A WebSocket close frame's reason holds at most 123 bytes of UTF-8 (RFC 6455 5.5); ws and browsers throw past it. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** `reason` cut (on a character boundary) to what a WebSocket close frame can carry. */
export function fitCloseReason(reason: string): string {
  return utf8Decode(truncateUtf8(reason, MAX_CLOSE_REASON_BYTES));
}
