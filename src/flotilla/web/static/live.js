// Live progress on the cluster page: server-sent events, one a second, until the
// operation ends. No framework; the page works (without live updates) without it.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || box.getAttribute("data-running") !== "1" || !window.EventSource) {
    return;
  }
  function field(name) {
    return box.querySelector('[data-field="' + name + '"]');
  }
  function setText(name, text) {
    var el = field(name);
    if (el) { el.textContent = text; }
  }
  function setBadge(name, text, cls) {
    var els = [field(name)];
    if (name === "status") { els.push(document.getElementById("head-status")); }
    els.forEach(function (el) {
      if (el) { el.textContent = text; el.className = "badge " + cls; }
    });
  }
  function update(d) {
    setBadge("status", d.status, d.status_class);
    setBadge("health", d.health_status, d.health_class);
    setText("elapsed", d.elapsed_text);
    setText("reason", d.status_reason);
    var bar = field("progress");
    if (d.step) {
      setText("step", d.step.index + " of " + d.step.total + ": " + d.step.text);
      if (bar) { bar.max = d.step.total; bar.value = d.step.index - 1; }
    } else {
      setText("step", d.running ? "waiting for a conductor" : "-");
      if (bar && !d.running) { bar.max = 1; bar.value = 1; }
    }
  }
  var lastStatus = box.getAttribute("data-status") || "";
  function showGone() {
    ["gone"].forEach(function (id) { var el = document.getElementById(id); if (el) { el.hidden = false; } });
    ["cluster-actions"].forEach(function (id) { var el = document.getElementById(id); if (el) { el.hidden = true; } });
    var details = document.getElementById("details");
    if (details) { details.className += " dimmed"; }
    setBadge("status", "DELETE_COMPLETE", "ok");
    setBadge("health", "UNKNOWN", "idle");
    setText("step", "-");
    var bar = field("progress");
    if (bar) { bar.hidden = true; }
  }
  var source = new EventSource(box.getAttribute("data-events"));
  source.onmessage = function (ev) {
    var d = JSON.parse(ev.data);
    lastStatus = d.status;
    update(d);
  };
  // The stream was refused (the cluster is gone, or the session ended): ask once more.
  source.onerror = function () {
    if (source.readyState !== EventSource.CLOSED) { return; }
    fetch(box.getAttribute("data-status-url"), { credentials: "same-origin" }).then(function (r) {
      if (r.status === 404 && lastStatus.indexOf("DELETE") === 0) {
        box.setAttribute("data-running", "0");
        showGone();
      } else {
        window.location.replace(window.location.pathname);
      }
    });
  };
  source.addEventListener("done", function (ev) {
    source.close();
    var d = JSON.parse(ev.data);
    update(d);
    box.setAttribute("data-running", "0");
    if (d.gone) {
      showGone();
      return;
    }
    // Addresses, node groups and history changed too: show the page as it is now.
    window.location.replace(window.location.pathname);
  });
})();
