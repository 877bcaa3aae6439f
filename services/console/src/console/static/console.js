// The console's one script (no inline script anywhere: the CSP forbids it). Progressive
// enhancement only: every page works without it.
"use strict";

// <form data-confirm="Delete this user?">: ask before an irreversible action.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// <section data-live="/console/live/jobs" data-live-refresh="/jobs/index?fragment=1">: when the
// server-sent stream says something changed, fetch the fragment again and swap it in.
function follow(section) {
  const source = new EventSource(section.dataset.live);
  let pending = false;
  // data-live-state: "open" while the stream is connected (tests wait for it), else "retrying"
  source.addEventListener("open", () => { section.dataset.liveState = "open"; });
  source.addEventListener("error", () => { section.dataset.liveState = "retrying"; });
  source.addEventListener("change", () => {
    if (pending) { return; }
    pending = true;
    window.setTimeout(async () => {
      pending = false;
      const answer = await fetch(section.dataset.liveRefresh, {headers: {"Accept": "text/html"}, credentials: "same-origin"});
      if (answer.ok) {
        section.innerHTML = await answer.text();
        section.dataset.liveUpdated = String(Date.now());
      }
    }, 150);
  });
}
document.querySelectorAll("[data-live]").forEach(follow);
