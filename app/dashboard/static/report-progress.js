/* advocase: a report's progress bar, kept up to date without reloading the page.
 *
 * Without this script the page shows the progress as it was when loaded, with a link to
 * reload it. With it, the page asks the report's progress address (a small JSON answer:
 * status, percent, step) every few seconds while the build is not finished, and updates
 * the bar, the percentage and the step; once finished it offers the link to the
 * downloads (or shows why the build failed). Nothing is kept after the page is left.
 */
(function () {
  "use strict";

  var block = document.getElementById("report-progress");
  if (!block || !window.fetch || block.getAttribute("data-finished") === "true") {
    return;
  }
  var url = block.getAttribute("data-progress-url");
  var seconds = parseFloat(block.getAttribute("data-poll-seconds")) || 2;
  var bar = document.getElementById("report-bar");
  var percent = document.getElementById("report-percent");
  var step = document.getElementById("report-step-label");
  var status = document.getElementById("report-status");
  var failure = document.getElementById("report-failure");
  var reload = document.getElementById("report-reload");
  var ready = document.getElementById("report-ready");
  var failures = 0;

  function show(answer) {
    bar.value = answer.percent;
    bar.textContent = answer.percent + "%";
    percent.textContent = answer.percent + "%";
    step.textContent = answer.step_label;
    status.textContent = answer.status_label;
    if (answer.failure_reason) {
      failure.textContent = answer.failure_reason;
      failure.hidden = false;
    }
    if (answer.done) {
      reload.hidden = true;
      if (answer.status === "done") {
        ready.hidden = false;
      }
    }
  }

  function ask() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (answer) {
        failures = 0;
        show(answer);
        if (!answer.done) {
          window.setTimeout(ask, seconds * 1000);
        }
      })
      .catch(function () {
        // A broken connection or an ended session: try a few more times, then leave the
        // reload link to the person.
        failures += 1;
        if (failures < 5) {
          window.setTimeout(ask, seconds * 2000);
        }
      });
  }

  window.setTimeout(ask, seconds * 1000);
}());
