/* global window, document */
// The page's side of the web terminal: xterm.js <-> an SDK stream to the route `shell`.
// Messages to the PTY server (README.md): 0 = data (u16 length + UTF-8 bytes), 1 = resize (u16 cols, u16 rows).
import { Terminal } from '/xterm.mjs';
import { openSession } from '/sockgate.js';

const status = document.getElementById('status');
const setStatus = (state, text) => {
  status.dataset.state = state;
  status.textContent = text;
};

const term = new Terminal({ cols: 100, rows: 30, convertEol: false });
term.open(document.getElementById('terminal'));
// Tests (and curious users) read the rendered text through term.buffer.
window.term = term;

const encoder = new TextEncoder();
const MAX_DATA = 0xffff;

function dataFrames(text) {
  const bytes = encoder.encode(text);
  const frames = [];
  for (let at = 0; at < bytes.length; at += MAX_DATA) {
    const part = bytes.subarray(at, at + MAX_DATA);
    const frame = new Uint8Array(3 + part.length);
    frame[0] = 0;
    new DataView(frame.buffer).setUint16(1, part.length);
    frame.set(part, 3);
    frames.push(frame);
  }
  return frames;
}

function resizeFrame(cols, rows) {
  const frame = new Uint8Array(5);
  const view = new DataView(frame.buffer);
  frame[0] = 1;
  view.setUint16(1, cols);
  view.setUint16(3, rows);
  return frame;
}

try {
  const session = await openSession('/mux');
  const socket = session.connect('shell');
  const { readable, writable } = await socket.opened;
  const writer = writable.getWriter();
  // Writes are queued in order by the writer; a failure shows in the status line.
  const send = (frame) => writer.write(frame).catch((err) => setStatus('error', `write failed: ${err.code ?? err}`));
  send(resizeFrame(term.cols, term.rows));
  term.onResize(({ cols, rows }) => send(resizeFrame(cols, rows)));
  term.onData((text) => dataFrames(text).forEach(send));
  setStatus('open', 'connected');
  term.focus();
  const reader = readable.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    term.write(value);
  }
  setStatus('closed', 'the shell exited');
} catch (err) {
  setStatus('error', `${err.code ?? 'error'}: ${err.message ?? err}`);
}
