// An image page: reading by keyboard (P pneumonia, N normal, J the next unread flagged image, K and L the previous
// and next image in the worklist, W the worklist; keys typed into a field, or with a modifier held, are left
// alone), and the heatmap's placeholder until it arrives.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, textarea, select")) {
    return;
  }
  const targets = {
    p: "button[value=pneumonia]",
    n: "button[value=normal]",
    j: "#next-unread",
    k: "#previous-image",
    l: "#following-image",
    w: "#to-worklist",
  };
  const selector = targets[event.key.toLowerCase()];
  const element = selector && document.querySelector(selector);
  if (element) {
    event.preventDefault();
    element.click();
  }
});

const heatmap = document.querySelector("#heatmap");
const pending = document.querySelector("#heatmap-pending");
if (heatmap && pending) {
  const settle = (message) => {
    if (message) {
      pending.textContent = message;
    } else {
      pending.hidden = true;
    }
  };
  if (heatmap.complete && heatmap.naturalWidth > 0) {
    settle(null);
  }
  heatmap.addEventListener("load", () => settle(null));
  heatmap.addEventListener("error", () => settle("The heatmap could not be made for this film."));
}
