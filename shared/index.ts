/** sockgate/protocol: the shared codec, error registry, flow-control arithmetic and session engine. */
export * from './constants.js';
export * from './errors.js';
export type * from './frame.js';
export * from './encode.js';
export * from './decode.js';
export * from './flow.js';
export * from './session.js';
