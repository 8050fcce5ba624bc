// The film viewer of an image page (OpenSeadragon): the screened film at its own resolution with zoom and pan, a
// window (level and width) and invert applied by an SVG filter on the film alone, the DICOM file's VOI presets,
// and the heatmap as a layer of its own with a toggle and an opacity. Keys: + and - zoom, arrows pan, 0 resets,
// I inverts, H shows or hides the heatmap; a right-button drag sets the window (sideways: width, up and down:
// level). Keys typed into a field, or with a modifier held, are left alone.
const element = document.querySelector("#film-viewer");
if (element && window.OpenSeadragon) {
  const viewer = OpenSeadragon({
    element,
    prefixUrl: "/static/viewer/images/",
    tileSources: { type: "image", url: element.dataset.film },
    drawer: "canvas",
    showNavigationControl: false,
    gestureSettingsMouse: { clickToZoom: false },
    maxZoomPixelRatio: 8,
  });
  window.filmViewer = viewer; // for the browser test
  viewer.addHandler("canvas-key", (event) => {
    event.preventDefaultAction = true; // its own keys (W, A, S, D, R, F) would clash with the page's
  });

  const transfer = document.querySelectorAll("#window-level feFuncR, #window-level feFuncG, #window-level feFuncB");
  const settings = { level: 0.5, width: 1, inverted: false };
  const applyWindow = () => {
    let slope = 1 / settings.width;
    let intercept = 0.5 - settings.level / settings.width;
    if (settings.inverted) {
      slope = -slope;
      intercept = 1 - intercept;
    }
    transfer.forEach((curve) => {
      curve.setAttribute("slope", slope.toFixed(4));
      curve.setAttribute("intercept", intercept.toFixed(4));
    });
  };
  const resetAll = () => {
    Object.assign(settings, { level: 0.5, width: 1, inverted: false });
    applyWindow();
    viewer.viewport.goHome();
  };

  const heatToggle = document.querySelector("#heat-toggle");
  const heatOpacity = document.querySelector("#heat-opacity");
  const holder = document.createElement("div"); // OpenSeadragon places and sizes the holder; the layer is ours
  const layer = document.createElement("img");
  layer.id = "evidence-layer";
  layer.alt = "heatmap layer";
  layer.src = element.dataset.evidence;
  holder.appendChild(layer);
  const showLayer = () => {
    layer.style.display = heatToggle.checked ? "block" : "none";
    layer.style.opacity = String(heatOpacity.value / 100);
  };
  viewer.addHandler("open", () => {
    viewer.drawer.canvas.style.filter = "url(#window-level)"; // the film only: the layer is not in the canvas
    viewer.addOverlay({ element: holder, location: viewer.world.getItemAt(0).getBounds() });
    showLayer();
  });
  heatToggle.addEventListener("change", showLayer);
  heatOpacity.addEventListener("input", showLayer);

  document.querySelector("#preset").addEventListener("change", (event) => {
    viewer.open({ type: "image", url: `${element.dataset.film}?preset=${event.target.value}` });
  });
  document.querySelector("#invert").addEventListener("click", () => {
    settings.inverted = !settings.inverted;
    applyWindow();
  });
  document.querySelector("#reset").addEventListener("click", resetAll);

  let dragFrom = null;
  element.addEventListener("contextmenu", (event) => event.preventDefault());
  element.addEventListener("pointerdown", (event) => {
    if (event.button === 2) {
      dragFrom = { x: event.clientX, y: event.clientY, level: settings.level, width: settings.width };
    }
  });
  window.addEventListener("pointerup", () => {
    dragFrom = null;
  });
  window.addEventListener("pointermove", (event) => {
    if (!dragFrom) {
      return;
    }
    settings.width = Math.min(4, Math.max(0.02, dragFrom.width * Math.exp((event.clientX - dragFrom.x) / 200)));
    settings.level = Math.min(1.5, Math.max(-0.5, dragFrom.level - (event.clientY - dragFrom.y) / 400));
    applyWindow();
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, textarea, select")) {
      return;
    }
    const pan = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[event.key];
    const actions = {
      "+": () => viewer.viewport.zoomBy(1.25),
      "=": () => viewer.viewport.zoomBy(1.25),
      "-": () => viewer.viewport.zoomBy(0.8),
      0: resetAll,
      i: () => document.querySelector("#invert").click(),
      h: () => {
        heatToggle.checked = !heatToggle.checked;
        showLayer();
      },
    };
    const action = pan
      ? () => viewer.viewport.panBy(new OpenSeadragon.Point(pan[0] / viewer.viewport.getZoom(), pan[1] / viewer.viewport.getZoom()))
      : actions[event.key.toLowerCase()];
    if (action) {
      event.preventDefault();
      action();
      viewer.viewport.applyConstraints();
    }
  });
}
