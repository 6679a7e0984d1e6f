// deskside web UI: copy buttons, the height of the Help Scout preview frames, and pages that
// follow work in progress.
// Loaded from this server (no inline script): the pages' CSP allows nothing else.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const value = button.getAttribute("data-copy") || "";
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(value);
    button.textContent = "Copied";
  } catch {
    // No clipboard (plain http, old browser): select the value for Ctrl-C instead.
    const code = button.parentElement && button.parentElement.querySelector("code");
    if (code) {
      const details = code.closest("details");
      if (details) details.open = true;
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    button.textContent = "Press Ctrl-C";
  }
  setTimeout(() => { button.textContent = label; }, 1500);
});

// The sandboxed frames post their content height; only messages from our own frames count.
window.addEventListener("message", (event) => {
  const height = event.data && event.data.desksideFrameHeight;
  if (typeof height !== "number") return;
  for (const frame of document.querySelectorAll("iframe.hs-frame")) {
    if (frame.contentWindow === event.source) {
      frame.style.height = Math.min(Math.max(Math.ceil(height) + 2, 80), 2000) + "px";
    }
  }
});

// Frames that reported before this script ran are asked again.
for (const frame of document.querySelectorAll("iframe.hs-frame")) {
  if (frame.contentWindow) frame.contentWindow.postMessage("deskside-frame-height?", "*");
  frame.addEventListener("load", () => {
    if (frame.contentWindow) frame.contentWindow.postMessage("deskside-frame-height?", "*");
  });
}

// A page following work in progress (an import) reloads itself every few seconds, without
// its one-time notice, unless someone has started filling in one of its forms.
const following = document.querySelector("[data-reload-seconds]");
if (following) {
  let editing = false;
  document.addEventListener("input", () => { editing = true; });
  const seconds = Number(following.getAttribute("data-reload-seconds")) || 5;
  setTimeout(() => { if (!editing) location.replace(location.pathname); }, seconds * 1000);
}
