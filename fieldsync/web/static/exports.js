// Exports page: while a job is waiting or running, poll its status and move its progress bar;
// when it is ready, show the download link; when it failed, its plain error.
"use strict";
(function () {
  const textsBlock = document.getElementById("exports-texts");
  const texts = textsBlock ? JSON.parse(textsBlock.textContent) : {download: "Download", rows: "%(done)s of %(total)s rows"};
  const FINISHED = {done: true, failed: true};

  function rowsText(job) {
    if (job.total === null || job.total === undefined) return "";
    return texts.rows.replace("%(done)s", job.rows).replace("%(total)s", job.totalText);
  }

  function show(row, job) {
    row.dataset.status = job.status;
    const badge = row.querySelector("[data-role=status]");
    badge.textContent = job.statusLabel;
    badge.className = "badge badge-" + job.status;
    const progress = row.querySelector("[data-role=progress]");
    progress.setAttribute("aria-valuenow", job.percent);
    progress.firstElementChild.style.width = job.percent + "%";
    row.querySelector("[data-role=rows]").textContent = rowsText(job);
    const action = row.querySelector("[data-role=action]");
    if (job.download && !action.querySelector("a")) {
      const link = document.createElement("a");
      link.className = "btn btn-small btn-primary";
      link.href = job.download;
      link.textContent = texts.download;
      link.setAttribute("data-test", "download");
      action.replaceChildren(link);
    } else if (job.error) {
      const error = document.createElement("span");
      error.className = "job-error";
      error.textContent = job.error;
      action.replaceChildren(error);
    }
  }

  function poll(row, delay) {
    window.setTimeout(function () {
      window.fieldsyncFetch(row.dataset.statusUrl, {headers: {"Accept": "application/json"}})
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (job) {
          show(row, job);
          if (!FINISHED[job.status]) poll(row, Math.min(delay * 1.5, 5000));
        })
        .catch(function () { poll(row, 5000); });
    }, delay);
  }

  document.querySelectorAll("tr[data-job]").forEach(function (row) {
    if (!FINISHED[row.dataset.status]) poll(row, 500);
  });
})();
