// pgjobs dashboard: live sections and confirmations. No build step, no
// framework; served from 'self' under a CSP that forbids inline script.
(function () {
  "use strict";
  var body = document.body;
  var root = body.getAttribute("data-root") || "";

  // Forms marked data-confirm ask first (purge).
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  if (body.getAttribute("data-live") !== "on" || !window.EventSource) {
    return;
  }
  if (!document.querySelector("[data-live]")) {
    return;
  }

  var timer = null;
  var busy = false;

  // Fetch this page again and swap in its live sections (same ids).
  function refresh() {
    timer = null;
    if (busy) {
      timer = window.setTimeout(refresh, 500);
      return;
    }
    busy = true;
    window.fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Pgjobs-Live": "1" }
    }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (!html) {
        return;
      }
      var fresh = new window.DOMParser().parseFromString(html, "text/html");
      document.querySelectorAll("[data-live]").forEach(function (section) {
        var replacement = fresh.getElementById(section.id);
        if (replacement) {
          section.replaceWith(document.importNode(replacement, true));
        }
      });
      var stamp = document.getElementById("live-stamp");
      if (stamp) {
        stamp.textContent = "live · updated " + new Date().toLocaleTimeString();
      }
    }).catch(function () {
      // The next event tries again.
    }).then(function () {
      busy = false;
    });
  }

  var source = new window.EventSource(root + "/live");
  source.addEventListener("job", function () {
    if (timer === null) {
      timer = window.setTimeout(refresh, 300);
    }
  });
  // Open (and reopened): catch up with what happened since the page was
  // rendered; the stream then carries every later event.
  source.addEventListener("open", function () {
    var stamp = document.getElementById("live-stamp");
    if (stamp && !stamp.textContent) {
      stamp.textContent = "live";
    }
    if (timer === null) {
      timer = window.setTimeout(refresh, 0);
    }
  });
})();
