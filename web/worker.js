// Module worker: loads the same wasm module as the page and hands every message to Rust.
import init, { worker_handle } from './mien-web.js';

let ready = null;
// Registered synchronously: messages that arrive before a listener exists would be lost.
self.onmessage = async (event) => {
  const msg = event.data;
  if (msg && msg.type === 'init') {
    // msg.module is the page's compiled WebAssembly.Module: no second download or compile.
    ready = init({ module_or_path: msg.module });
    try {
      await ready;
    } catch (e) {
      self.postMessage({ type: 'fatal', error: 'the app module failed to load in the worker: ' + e });
      return;
    }
  } else if (ready) {
    await ready;
  }
  worker_handle(msg);
};
