// Module worker: runs the engine, one of two builds of the app's wasm module. `mien-web` is the
// page's own module (CPU only), handed over compiled; `mien-gpu` adds WebGPU and is imported only
// when the page asks for it (see web/src/gpu.rs).
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

// The service worker's cache (web/sw.js): the WebGPU build is put there as soon as it is
// fetched, so the WebGPU path runs offline after the first visit too (on that visit the service
// worker does not control the page yet, and sees none of its fetches).
const OFFLINE_CACHE = 'mien-v2';

async function loadWebGpuEngine() {
  const gpu = await import('./mien-gpu.js');
  const wasm = new URL('./mien-gpu_bg.wasm', import.meta.url);
  const resp = await fetch(wasm);
  if (!resp.ok) throw new Error(`HTTP ${resp.status} for ${wasm.pathname}`);
  if (self.caches) {
    const glue = new URL('./mien-gpu.js', import.meta.url);
    // Cloned now: once instantiation starts reading `resp`, it can no longer be cloned.
    const copy = resp.clone();
    caches
      .open(OFFLINE_CACHE)
      .then((c) => Promise.all([c.put(wasm, copy), c.add(glue)]))
      .catch((e) => console.warn(`mien: the WebGPU engine could not be kept for offline use (${e})`));
  }
  await gpu.default({ module_or_path: resp });
  return gpu.worker_handle;
}

let ready = null;
let handle = worker_handle;

// The channel to the other worker of a pair that shares each photo's detection (one runs parts
// of the other's; see web/src/worker.rs). The page introduces the two once both have loaded
// their models; parts go only to a peer that has said hello, and answers back to whoever asked.
let peer = null;
let peerReady = false;
self.mienPeerReady = () => peer !== null && peerReady;
self.mienPeerPost = (msg, transfer, answer) => {
  if (!peer || !(peerReady || answer)) return false;
  peer.postMessage(msg, transfer);
  return true;
};

function meetPeer(port) {
  peer = port;
  peer.onmessage = async (event) => {
    if (event.data && event.data.type === 'peer-ready') {
      peerReady = true;
      return;
    }
    if (ready) await ready;
    handle(event.data);
  };
  peer.postMessage({ type: 'peer-ready' });
}

// Registered synchronously: messages that arrive before a listener exists would be lost.
self.onmessage = async (event) => {
  const msg = event.data;
  if (msg && msg.type === 'peer') {
    meetPeer(msg.port);
    return;
  }
  if (msg && msg.type === 'init') {
    ready = (async () => {
      if (msg.engine === 'webgpu') {
        try {
          handle = await loadWebGpuEngine();
          return;
        } catch (e) {
          // Offline before WebGPU was ever used, say: the page's module runs on the CPU.
          msg.engine_error = String(e);
        }
      }
      // msg.module is the page's compiled WebAssembly.Module: no second download or compile.
      await init({ module_or_path: msg.module });
    })();
    try {
      await ready;
    } catch (e) {
      self.postMessage({ type: 'fatal', error: 'the app module failed to load in the worker: ' + e });
      return;
    }
  } else if (ready) {
    await ready;
  }
  handle(msg);
};
