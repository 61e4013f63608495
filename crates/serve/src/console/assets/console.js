// Keeps the live part of a console page current while runs progress. Every second it fetches
// the page's live part (a request that does not count as use of the session) and, when it
// changed, swaps it in — unless someone is typing in it, has focus or a selection in it, or has
// opened a detail. A part marked "notify" (runs waiting for approval, with their buttons) is
// never swapped under the pointer: a bar offers to show the new state instead. The refresh stops
// when the page says nothing will change (a finished run), and slows down after errors.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var last = null;
  var delay = 1000;
  function mode() {
    var marked = live.querySelector("[data-live]");
    return marked ? marked.getAttribute("data-live") : "off";
  }
  function busy() {
    var active = document.activeElement;
    if (active && active !== document.body && live.contains(active)) { return true; }
    var fields = live.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value) { return true; }
    }
    if (live.querySelector("details[open]")) { return true; }
    var selection = window.getSelection && window.getSelection();
    return !!(selection && !selection.isCollapsed && live.contains(selection.anchorNode));
  }
  function offer() {
    if (document.getElementById("live-changed")) { return; }
    var bar = document.createElement("p");
    bar.id = "live-changed";
    bar.className = "flash warn";
    bar.setAttribute("role", "status");
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Show the latest";
    button.addEventListener("click", function () { window.location.reload(); });
    bar.appendChild(document.createTextNode("This list has changed. "));
    bar.appendChild(button);
    live.parentNode.insertBefore(bar, live);
  }
  function ids(root) {
    var found = [];
    var marked = root.querySelectorAll("[data-run-id]");
    for (var i = 0; i < marked.length; i++) { found.push(marked[i].getAttribute("data-run-id")); }
    return found.join(" ");
  }
  function next() { setTimeout(refresh, delay); }
  function refresh() {
    var now = mode();
    if (now !== "on" && now !== "notify") { return; }
    if (document.hidden || busy()) { next(); return; }
    fetch(window.location.href, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        if (response.status === 403 || response.status === 404) { delay = 0; return null; }
        // A list waiting for approval changes seldom, and reading it costs the most.
        var every = now === "notify" ? 5000 : 1000;
        delay = response.ok ? every : Math.min(Math.max(delay, every) * 2, 30000);
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined || html === last) { return; }
        if (now === "notify") {
          var fresh = document.createElement("template");
          fresh.innerHTML = html;
          if (ids(fresh.content) !== ids(live)) { offer(); delay = 0; }
          return;
        }
        if (!busy()) { live.innerHTML = html; last = html; }
      })
      .catch(function () { delay = Math.min(delay * 2, 30000); })
      .then(function () { if (delay > 0) { next(); } });
  }
  next();
})();
