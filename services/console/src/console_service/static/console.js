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
      const also = form.dataset.also ? document.querySelector(form.dataset.also) : null;
      await Promise.all([
        swap(target, `${form.dataset.partial}?${query}`),
        also ? swap(also, `${form.dataset.alsoPartial}?${query}`) : null,
      ]);
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

  // The directory tree: a click puts the directory (and below) in the "dir" box and
  // applies the filter form, so the grid narrows with the DQL filter kept.
  function wireTree() {
    document.addEventListener("click", (event) => {
      const link = event.target.closest("#dir-tree a[data-dir]");
      const form = document.getElementById("filter-form");
      const box = document.getElementById("dir");
      if (!link || !form || !box || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      box.value = link.dataset.dir;
      form.requestSubmit();
    });
  }

  // A thumbnail the service could not make (an undecodable image) shows as a file tile.
  function wireThumbnails(root) {
    root.querySelectorAll("img.thumb").forEach((image) => {
      const fallback = () => {
        const tile = document.createElement("span");
        tile.className = "file";
        tile.textContent = "no preview";
        image.replaceWith(tile);
      };
      image.addEventListener("error", fallback, { once: true });
    });
  }

  // The overlay follows the image's own size when the server did not know it.
  function wireCanvas(root) {
    const image = root.querySelector("#canvas-image");
    const overlay = root.querySelector("#overlay");
    if (!image || !overlay) return;
    const fit = () => {
      // Small images (scans, icons) are clearer as pixels than blurred when enlarged.
      image.classList.toggle("pixelated", image.naturalWidth > 0 && image.naturalWidth < 256);
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

  // Review: "Draw box" (b) toggles drawing; drag on the image to draw a box. Each box
  // becomes a hidden new_box field (image coordinates) of the correct form.
  function wireDrawing() {
    const toggle = document.getElementById("draw-box");
    const overlay = document.getElementById("overlay");
    const form = document.getElementById("correct-form");
    if (!toggle || !overlay || !form) return;
    const SVG = "http://www.w3.org/2000/svg";
    let drawing = false;
    let start = null;
    let rect = null;
    const toImage = (event) => {
      const point = overlay.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      return point.matrixTransform(overlay.getScreenCTM().inverse());
    };
    const place = (a, b) => {
      rect.setAttribute("x", Math.min(a.x, b.x));
      rect.setAttribute("y", Math.min(a.y, b.y));
      rect.setAttribute("width", Math.abs(b.x - a.x));
      rect.setAttribute("height", Math.abs(b.y - a.y));
    };
    toggle.addEventListener("click", () => {
      drawing = !drawing;
      toggle.classList.toggle("active", drawing);
      overlay.classList.toggle("drawing", drawing);
    });
    overlay.addEventListener("pointerdown", (event) => {
      if (!drawing) return;
      event.preventDefault();
      start = toImage(event);
      rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", "ann ann-new");
      place(start, start);
      overlay.appendChild(rect);
      overlay.setPointerCapture(event.pointerId);
    });
    overlay.addEventListener("pointermove", (event) => {
      if (start && rect) place(start, toImage(event));
    });
    overlay.addEventListener("pointerup", (event) => {
      if (!start || !rect) return;
      const end = toImage(event);
      const round = (v) => Math.round(v * 10) / 10;
      if (Math.abs(end.x - start.x) >= 1 && Math.abs(end.y - start.y) >= 1) {
        const field = document.createElement("input");
        field.type = "hidden";
        field.name = "new_box";
        field.value = [start.x, start.y, end.x, end.y].map(round).join(",");
        form.appendChild(field);
        const count = form.querySelectorAll('input[name="new_box"]').length;
        document.getElementById("drawn-count").textContent = `${count} box${count === 1 ? "" : "es"} drawn`;
      } else {
        rect.remove();
      }
      start = null;
      rect = null;
    });
  }

  function wire(root) {
    root.querySelectorAll("form[data-swap]").forEach(wireFilterForm);
    root.querySelectorAll("[data-poll]").forEach(wirePoll);
    wireGrid(root);
    wireThumbnails(root);
    wireCanvas(root);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire(document);
    wireTree();
    wireKeys();
    wireDrawing();
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
