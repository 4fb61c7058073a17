#!/usr/bin/env node
/**
 * The `sockgate` command. Every sockgate process moves bulk bytes, so V8's incremental marking goes off first
 * (server/gc-tuning.ts; SOCKGATE_INCREMENTAL_GC=1 keeps it): before anything else is loaded, because changing the
 * flag while V8 marks the heap concurrently aborts the process. Then the CLI proper (server/cli-main.ts).
 */
import { tuneGcForThroughput } from './gc-tuning.js';

tuneGcForThroughput();
await import('./cli-main.js');
