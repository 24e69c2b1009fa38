/* advocase: evidence upload with a progress bar.
 *
 * Without this script the form is an ordinary multipart POST and the server answers with
 * the evidence page. With it, the same form (same fields, same order, the CSRF token
 * first) is sent by XMLHttpRequest so the upload's progress can be shown; the server
 * answers in JSON and the SHA-256 of the stored file is shown here. Nothing is read from
 * the file in the browser and nothing is kept after the page is left.
 */
(function () {
  "use strict";

  var form = document.getElementById("evidence-upload");
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }
  var fileInput = document.getElementById("file");
  var button = document.getElementById("upload-button");
  var progressBlock = document.getElementById("upload-progress-block");
  var progress = document.getElementById("upload-progress");
  var percent = document.getElementById("upload-percent");
  var status = document.getElementById("upload-status");
  var result = document.getElementById("upload-result");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);

  function clearMessages() {
    status.textContent = "";
    status.className = "";
    var marked = form.querySelectorAll("[aria-invalid='true'][data-marked-by-script]");
    for (var i = 0; i < marked.length; i += 1) {
      marked[i].removeAttribute("aria-invalid");
      marked[i].removeAttribute("data-marked-by-script");
    }
  }

  function showProblem(detail, errors) {
    status.className = "error-summary";
    var heading = document.createElement("p");
    heading.className = "error-heading";
    heading.textContent = detail;
    status.appendChild(heading);
    if (!errors || !errors.length) {
      return;
    }
    var list = document.createElement("ul");
    errors.forEach(function (error) {
      var item = document.createElement("li");
      var target = error.field ? document.getElementById(error.field) : null;
      if (target) {
        var link = document.createElement("a");
        link.href = "#" + error.field;
        link.textContent = error.message;
        item.appendChild(link);
        target.setAttribute("aria-invalid", "true");
        target.setAttribute("data-marked-by-script", "1");
      } else {
        item.textContent = error.message;
      }
      list.appendChild(item);
    });
    status.appendChild(list);
  }

  function finished() {
    button.disabled = false;
    progressBlock.hidden = true;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearMessages();
    result.hidden = true;
    var file = fileInput.files && fileInput.files[0];
    if (!file) {
      showProblem("Choose a file to add.", [{ field: "file", message: "choose a file" }]);
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      showProblem("The file is larger than the limit of " +
        form.getAttribute("data-max-size") + ".", [{ field: "file", message: "too large" }]);
      return;
    }

    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "text";

    request.upload.addEventListener("progress", function (progressEvent) {
      if (!progressEvent.lengthComputable) {
        return;
      }
      var done = Math.floor((progressEvent.loaded / progressEvent.total) * 100);
      progress.value = done;
      percent.textContent = done + "%";
    });
    request.upload.addEventListener("load", function () {
      progress.value = 100;
      percent.textContent = "100%";
      status.textContent = "Received; checking and storing the file…";
    });
    request.addEventListener("load", function () {
      finished();
      var answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch (error) {
        answer = null;
      }
      clearMessages();
      if (request.status === 201 && answer) {
        document.getElementById("upload-sha256").textContent = answer.sha256;
        document.getElementById("upload-type").textContent = answer.type;
        document.getElementById("upload-size").textContent = answer.size;
        document.getElementById("upload-link").href = answer.evidence_url;
        result.hidden = false;
        status.textContent = "Upload complete.";
        form.reset();
        return;
      }
      if (answer && answer.detail) {
        showProblem(answer.detail, answer.errors);
      } else {
        showProblem("The upload was refused (" + request.status + "). Reload the page and " +
          "try again.", []);
      }
    });
    request.addEventListener("error", function () {
      finished();
      clearMessages();
      showProblem("The connection broke off before the upload finished; nothing was kept. " +
        "Try again.", []);
    });

    var data = new FormData(form);
    button.disabled = true;
    progress.value = 0;
    percent.textContent = "0%";
    progressBlock.hidden = false;
    request.send(data);
  });
}());
