// Reading by keyboard on an image page: P pneumonia, N normal, J the next unread flagged image, W the worklist.
// Keys typed into a field, or with a modifier held, are left alone.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, textarea, select")) {
    return;
  }
  const targets = { p: "button[value=pneumonia]", n: "button[value=normal]", j: "#next-unread", w: "#to-worklist" };
  const selector = targets[event.key.toLowerCase()];
  const element = selector && document.querySelector(selector);
  if (element) {
    event.preventDefault();
    element.click();
  }
});
