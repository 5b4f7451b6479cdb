// tillhook dashboard: keeps the parts of a page marked data-live="URL" up to date by
// fetching their server-rendered HTML every few seconds (no full reload). Nothing else.
"use strict";

const REFRESH_MS = 2000;
const lastHtml = new WeakMap(); // region -> the HTML it was last given

async function refresh(region) {
  if (document.hidden || region.contains(document.activeElement) && document.activeElement !== document.body) {
    return;
  }
  let response;
  try {
    response = await fetch(region.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } });
  } catch (error) {
    document.body.dataset.offline = "true";
    return;
  }
  delete document.body.dataset.offline;
  if (response.redirected || response.status === 401 || response.status === 403) {
    window.location.reload(); // signed out meanwhile: show the sign-in page
    return;
  }
  if (response.ok) {
    const html = await response.text();
    if (html === lastHtml.get(region)) {
      return; // nothing changed: keep the page as it is (a selection, the focus, a screen reader's place)
    }
    lastHtml.set(region, html);
    // The server escapes everything it shows; scripts in inserted HTML never run, and the
    // Content-Security-Policy allows none but this file.
    region.innerHTML = html;
    region.dataset.refreshed = String(Date.now());
  }
}

function start() {
  const regions = document.querySelectorAll("[data-live]");
  if (regions.length === 0) {
    return;
  }
  window.setInterval(() => regions.forEach(refresh), REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);

// Buttons that need a second thought carry data-confirm="question".
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A button with data-copy="#selector" copies that element's text (a secret shown once).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  const source = button && document.querySelector(button.dataset.copy);
  if (!source) {
    return;
  }
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.dataset.copied = "true";
    button.textContent = "Copied";
  } catch (error) {
    button.dataset.copied = "false";
    button.textContent = "Not copied: select the text and copy it";
  }
});
