// prelabel console: fetch-and-swap partial updates, polling, item selection and the
// review keys. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

(function () {
  const PARTIAL = { "X-Console-Partial": "1" };

  async function fetchFragment(url) {
    const response = await fetch(url, { headers: PARTIAL, credentials: "same-origin" });
    if (response.status === 401) { window.location.reload(); return null; }
    return await response.text();
  }

  async function swap(target, url) {
    const html = await fetchFragment(url);
    if (html !== null) { target.innerHTML = html; wire(target); }
    return html;
  }

  // Forms with data-swap: GET the partial with the form's fields, swap it in, keep the
  // address bar in step (a reload shows the same page).
  function wireFilterForm(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const query = new URLSearchParams(new FormData(form)).toString();
      const target = document.querySelector(form.dataset.swap);
      await swap(target, `${form.dataset.partial}?${query}`);
      history.replaceState(null, "", `${form.action}?${query}`);
      document.querySelectorAll("[data-mirror]").forEach((input) => {
        const source = document.querySelector(input.dataset.mirror);
        if (source) input.value = source.value;
      });
      updateCount();
    });
  }

  // Elements with data-poll: refresh their content every data-interval ms until the
  // fragment says data-done="1".
  function wirePoll(element) {
    if (element.dataset.wired) return;
    element.dataset.wired = "1";
    const interval = parseInt(element.dataset.interval || "2000", 10);
    const tick = async () => {
      if (element.querySelector('[data-done="1"]')) return;
      try { await swap(element, element.dataset.poll); } catch (e) { /* next tick */ }
      if (!element.querySelector('[data-done="1"]')) setTimeout(tick, interval);
    };
    if (!element.querySelector('[data-done="1"]')) setTimeout(tick, interval);
  }

  // The grid: click a tile to select it, shift-click to select a range.
  let lastPicked = null;
  function picks() { return Array.from(document.querySelectorAll("input.pick")); }
  function updateCount() {
    const label = document.getElementById("selected-count");
    if (label) label.textContent = `${picks().filter((p) => p.checked).length} selected`;
    picks().forEach((p) => p.closest(".tile").classList.toggle("selected", p.checked));
  }
  function wireGrid(root) {
    root.querySelectorAll("input.pick").forEach((box) => {
      box.addEventListener("click", (event) => {
        const all = picks();
        if (event.shiftKey && lastPicked !== null) {
          const [a, b] = [all.indexOf(lastPicked), all.indexOf(box)].sort((x, y) => x - y);
          all.slice(a, b + 1).forEach((p) => { p.checked = box.checked; });
        }
        lastPicked = box;
        updateCount();
      });
    });
    root.querySelectorAll("a[data-swap-link]").forEach((link) => {
      link.addEventListener("click", async (event) => {
        event.preventDefault();
        await swap(document.getElementById("grid"), link.dataset.swapLink);
        history.replaceState(null, "", link.getAttribute("href"));
        updateCount();
      });
    });
  }

  // The overlay follows the image's own size when the server did not know it.
  function wireCanvas(root) {
    const image = root.querySelector("#canvas-image");
    const overlay = root.querySelector("#overlay");
    if (!image || !overlay) return;
    const fit = () => {
      if (!overlay.getAttribute("viewBox") && image.naturalWidth) {
        overlay.setAttribute("viewBox", `0 0 ${image.naturalWidth} ${image.naturalHeight}`);
      }
    };
    if (image.complete) fit(); else image.addEventListener("load", fit);
  }

  // Review keys: a (approve), d (discard), n / arrows (next, previous).
  function wireKeys() {
    const bound = document.querySelectorAll("[data-key]");
    if (!bound.length) return;
    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
      for (const element of bound) {
        if (element.dataset.key.split(" ").includes(event.key)) {
          event.preventDefault();
          element.click();
          return;
        }
      }
    });
  }

  function wire(root) {
    root.querySelectorAll("form[data-swap]").forEach(wireFilterForm);
    root.querySelectorAll("[data-poll]").forEach(wirePoll);
    wireGrid(root);
    wireCanvas(root);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire(document);
    wireKeys();
    const selectPage = document.getElementById("select-page");
    if (selectPage) {
      selectPage.addEventListener("click", () => {
        const all = picks();
        const on = !all.every((p) => p.checked);
        all.forEach((p) => { p.checked = on; });
        updateCount();
      });
    }
    updateCount();
  });
})();
