// Show every <time datetime="..."> in the browser's own time zone.
"use strict";
function kaaLocalTimes(root) {
  for (const el of (root || document).querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) {
      el.textContent = when.toLocaleString();
      el.title = el.getAttribute("datetime");
    }
  }
}
document.addEventListener("DOMContentLoaded", () => kaaLocalTimes(document));
