// FieldSync web app: small helpers shared by every page (no framework).
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]');
  // fetch() with the page's CSRF token and the session cookie, for the app's own calls.
  window.fieldsyncFetch = function (url, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = Object.assign({"X-CSRF-Token": csrf ? csrf.content : ""}, options.headers || {});
    return fetch(url, options);
  };
  // <form data-confirm="Are you sure?">: ask before a destructive action.
  document.addEventListener("submit", function (event) {
    const message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
  // <select data-autosubmit>: filters apply as soon as they change.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
