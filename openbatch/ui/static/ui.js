// openbatch dashboard: live parts without a build step or any other server.
// <div data-poll="URL" data-every="MS">: its HTML is replaced by URL's answer every MS ms.
// <pre data-tail="URL">: URL?offset=N answers {text, offset, done}; text is appended until done.
(function () {
  "use strict";
  function poll(el) {
    var every = parseInt(el.getAttribute("data-every") || "2000", 10);
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(el.getAttribute("data-poll"), {cache: "no-store"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () {})
        .then(function () { busy = false; });
    }, every);
  }
  function tail(el) {
    var offset = -1;
    var url = el.getAttribute("data-tail");
    var status = document.getElementById(el.getAttribute("data-status"));
    function step() {
      fetch(url + "?offset=" + offset, {cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (d) {
          var follow = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
          if (d.skipped) { el.textContent = "[... " + d.skipped + " bytes before ...]\n"; }
          if (d.text) { el.textContent += d.text; }
          if (follow) { el.scrollTop = el.scrollHeight; }
          offset = d.offset;
          if (status) { status.textContent = d.done ? "task completed" : "following"; }
          if (!d.done || d.text) { setTimeout(step, d.done ? 0 : 1000); }
        })
        .catch(function () { setTimeout(step, 3000); });
    }
    step();
  }
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("[data-tail]").forEach(tail);
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (ev) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
})();
