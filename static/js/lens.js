// Shows whether a course section's live connection is up (the "live" badge).
document.addEventListener("htmx:wsOpen", (e) => {
  const section = e.target.closest("[ws-connect]");
  if (section) section.dataset.live = "open";
});
document.addEventListener("htmx:wsClose", (e) => {
  const section = e.target.closest("[ws-connect]");
  if (section) section.dataset.live = "closed";
});
// Clear the name field after a launch the server accepted.
document.addEventListener("htmx:afterRequest", (e) => {
  const form = e.target.closest("form");
  if (form && e.detail.successful && form.querySelector("input[name=name]")) {
    form.querySelector("input[name=name]").value = "";
  }
});
