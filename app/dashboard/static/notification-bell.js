/* advocase: the header's unread notification count, kept current without a reload.
 *
 * The page arrives with the count already in it (this script is not needed to see it).
 * While the page is visible the script asks the dashboard for the count every
 * data-poll-seconds seconds, and at once when the tab is shown again, and puts the answer
 * in the element that screen readers announce politely. The poll does not count as
 * activity: the session still ends after its idle timeout, and then polling stops.
 */
(function () {
  "use strict";

  var bell = document.getElementById("bell");
  var count = document.getElementById("bell-count");
  if (!bell || !count || !window.fetch) {
    return;
  }
  var url = bell.getAttribute("data-count-url");
  var seconds = parseFloat(bell.getAttribute("data-poll-seconds"));
  if (!(seconds >= 1)) {
    seconds = 15;
  }
  var timer = null;
  var asking = false;

  function show(unread) {
    var text = unread + " unread";
    if (count.textContent !== text) {
      count.textContent = text;
    }
    count.classList.toggle("has-unread", unread > 0);
  }

  function stop() {
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
    document.removeEventListener("visibilitychange", onVisibility);
  }

  function ask() {
    if (asking || document.hidden) {
      return;
    }
    asking = true;
    // A redirect means the session has ended (it would lead to the sign-in page): stop.
    window.fetch(url, {credentials: "same-origin", redirect: "manual", cache: "no-store",
                       headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401
            || response.status === 403 || response.status === 404) {
          stop();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && typeof body.unread === "number") {
          show(body.unread);
        }
      })
      .catch(function () {
        // Offline or the server restarting: the next tick asks again.
      })
      .then(function () {
        asking = false;
      });
  }

  function onVisibility() {
    if (!document.hidden) {
      ask();
    }
  }

  timer = window.setInterval(ask, seconds * 1000);
  document.addEventListener("visibilitychange", onVisibility);
}());
