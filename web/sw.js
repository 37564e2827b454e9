// Service worker: keeps the app's own files (code, weights, reports) in the Cache API, so a
// reload starts from the cache and the app works offline after the first visit. Nothing but
// same-origin GET requests is touched; nothing is ever sent anywhere.
// worker.js writes to the same cache: a new name here needs a new name there.
const CACHE = 'mien-v2';
// What every visitor runs. The engine's WebGPU build (mien-gpu.js, mien-gpu_bg.wasm) is kept
// once the worker first fetches it: only visitors whose path uses WebGPU download it at all.
const CORE = [
  './',
  './index.html',
  './mien-web.js',
  './mien-web_bg.wasm',
  './worker.js',
  './assets/mtcnn/pnet.safetensors',
  './assets/mtcnn/rnet.safetensors',
  './assets/mtcnn/onet.safetensors',
  './assets/mtcnn/onet_faces.safetensors',
  './assets/model/manifest.json',
  './assets/model/classifier.safetensors',
];

// Best effort, with retries: on a busy machine a download of megabytes (the wasm, the weights) can
// fail once; a file that still fails is fetched (and cached) on first use instead, and the console
// says which one.
async function addWithRetries(cache, url, tries) {
  for (let attempt = 1; ; attempt++) {
    try {
      await cache.add(url);
      return;
    } catch (e) {
      if (attempt >= tries) {
        console.warn(`mien: could not keep ${url} for offline use (${e}); it will be cached on first use`);
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
  }
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => Promise.all(CORE.map((u) => addWithRetries(c, u, 3))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))).then(() => self.clients.claim()),
  );
});

// Stale-while-revalidate: answer from the cache at once, refresh the copy in the background.
self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin) return;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => {
      const cached = await cache.match(req, { ignoreSearch: true });
      const fresh = fetch(req)
        .then((resp) => {
          if (resp.ok) cache.put(req, resp.clone());
          return resp;
        })
        .catch(() => null);
      if (cached) {
        event.waitUntil(fresh);
        return cached;
      }
      return (await fresh) || new Response('offline, and this file was never fetched', { status: 504 });
    }),
  );
});
