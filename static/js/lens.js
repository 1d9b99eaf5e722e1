// Shows whether a course section's live connection is up (the "live" badge).
document.addEventListener("htmx:wsOpen", (e) => {
  const section = e.target.closest("[ws-connect]");
  if (section) section.dataset.live = "open";
});
document.addEventListener("htmx:wsClose", (e) => {
  const section = e.target.closest("[ws-connect]");
  if (section) section.dataset.live = "closed";
});
// Clear the name field after a launch the server accepted (never after a refusal).
document.addEventListener("htmx:afterRequest", (e) => {
  const form = e.target.closest("form");
  const accepted = e.detail.xhr && e.detail.xhr.status >= 200 && e.detail.xhr.status < 300;
  if (form && accepted && form.querySelector("input[name=name]")) {
    form.querySelector("input[name=name]").value = "";
  }
});
// "Copy" buttons: copy the text of the element named by data-copy (e.g. a join link).
document.addEventListener("click", (e) => {
  const button = e.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  const text = source.value || source.textContent;
  navigator.clipboard.writeText(text.trim()).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
});
// Forms that ask first (replacing or removing an SSH key).
document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});
// A form whose answer is a download (a new private key): the page stays, so come back
// to it shortly to show what changed. Not for a submit the confirm above cancelled.
document.addEventListener("submit", (e) => {
  const next = e.target.dataset && e.target.dataset.afterDownload;
  if (next && !e.defaultPrevented) setTimeout(() => { window.location.href = next; }, 1500);
});
