// Module worker: loads the same wasm module as the page and hands every message to Rust.
import init, { worker_handle } from './mien-web.js';

// GPU loss: every WebGPU device burn asks for is watched, and the page is told when one is lost
// (driver reset, GPU unplugged, or destroyed), so it can move to the CPU path.
const gpuDevices = [];
if (self.GPUAdapter && GPUAdapter.prototype.requestDevice) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    gpuDevices.push(device);
    device.lost.then((info) =>
      self.postMessage({ type: 'gpu-lost', reason: String(info.reason), message: String(info.message || '') }));
    return device;
  };
}

// Fault injection, for the browser tests (same-origin only, like any script of the page):
// 'lose-gpu' destroys the worker's WebGPU devices, 'crash' throws an uncaught error.
new BroadcastChannel('mien-faults').onmessage = (event) => {
  if (event.data === 'lose-gpu') {
    gpuDevices.forEach((d) => d.destroy());
  } else if (event.data === 'crash') {
    setTimeout(() => { throw new Error('mien: injected worker fault'); });
  }
};

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
