// The web export's service worker: it gives the folder's own responses the
// headers of cross-origin isolation (COOP and COEP), which a static file
// server does not send and which WebAssembly threads need (SharedArrayBuffer).
// Every file of the export is same-origin, so requiring CORP blocks nothing.
//
// It also gives the scripts the page starts as workers (ONNX Runtime's and
// their threads) a Content-Security-Policy: no page's policy reaches a worker
// loaded from a URL, whose policy is its script's response header alone. The
// workers load, fetch and compile only the folder's files. The header is
// added to any the server sends, so that both bind.
const WORKER_POLICY = "default-src 'self'; script-src 'self' " +
    "'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'";
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
// Only the export's page is served with them: a navigation to any other page
// of this origin (another app on the same port, later) passes through, and
// the worker unregisters itself.
const page = new URL("./", self.location).pathname;
self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" &&
      ![page, page + "index.html"].includes(url.pathname)) {
    self.registration.unregister();
    return;
  }
  event.respondWith(fetch(request).then((response) => {
    if (response.status === 0) return response;  // Opaque: as it is.
    const headers = new Headers(response.headers);
    headers.set("Cross-Origin-Opener-Policy", "same-origin");
    headers.set("Cross-Origin-Embedder-Policy", "require-corp");
    if (["worker", "sharedworker"].includes(request.destination)) {
      headers.append("Content-Security-Policy", WORKER_POLICY);
    }
    return new Response(response.body, {status: response.status,
                                        statusText: response.statusText, headers});
  }));
});
