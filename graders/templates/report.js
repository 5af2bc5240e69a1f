/* The self-grade form: live totals, localStorage persistence, JSON/CSV export. No network. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("nbgrade-data").textContent);
  var partial = data.partial_levels;
  var selfParts = data.parts.filter(function (p) { return document.getElementById("selfgrade-" + p.id); });

  function fmt(x) { return String(Math.round(x * 100) / 100); }

  function choiceOf(id) {
    var box = document.querySelector('input[name="sg-' + id + '"]:checked');
    var comment = document.getElementById("comment-" + id).value;
    if (!box) { return { part: id, level: null, points: null, comment: comment }; }
    return { part: id, level: Number(box.value), points: Number(box.getAttribute("data-points")), comment: comment };
  }

  function choices() { return selfParts.map(function (p) { return choiceOf(p.id); }); }

  function needsComment(c) { return c.level !== null && partial.indexOf(c.level) >= 0 && c.comment.trim() === ""; }

  function selfMax() { return selfParts.reduce(function (s, p) { return s + p.self_max; }, 0); }

  function update() {
    var all = choices();
    var scored = 0, done = 0, missing = 0, pointed = 0, pointedDone = 0;
    all.forEach(function (c) {
      var part = data.parts.filter(function (p) { return p.id === c.part; })[0];
      var cellEl = document.querySelector('.sg-cell[data-part="' + c.part + '"]');
      var statusEl = document.querySelector('.sg-status[data-part="' + c.part + '"]');
      var area = document.getElementById("comment-" + c.part);
      var printEl = document.querySelector('.comment-print[data-part="' + c.part + '"]');
      if (printEl) { printEl.textContent = c.comment; }
      if (c.level !== null) { scored += c.points; done += 1; }
      if (part.self_max > 0) { pointed += 1; if (c.level !== null) { pointedDone += 1; } }
      if (cellEl) { cellEl.textContent = (c.level === null ? "—" : fmt(c.points)) + " / " + fmt(part.self_max); }
      area.classList.toggle("needed", needsComment(c));
      if (needsComment(c)) {
        missing += 1;
        statusEl.textContent = "Partial credit needs a comment: say what is missing or wrong.";
        statusEl.className = "sg-status bad";
      } else if (c.level !== null) {
        statusEl.textContent = "Self-graded " + c.level + "/10" + (part.self_max ? " = " + fmt(c.points) + " of " + fmt(part.self_max) + " points." : ".");
        statusEl.className = "sg-status ok";
      } else {
        statusEl.textContent = "Not scored yet.";
        statusEl.className = "sg-status";
      }
    });
    var max = selfMax();
    var auto = data.autograded;
    var selfText = done === 0 ? "— / " + fmt(max) : fmt(scored) + " / " + fmt(max);
    var selfEl = document.getElementById("self-score");
    if (selfEl && max > 0) { selfEl.textContent = selfText; }
    var foot = document.getElementById("self-foot");
    if (foot) { foot.textContent = selfText; }
    document.getElementById("total-score").textContent = fmt(auto.score + scored) + " / " + fmt(auto.max + max);
    var pending = document.getElementById("self-pending");
    if (pending) {
      var notes = [];
      // Only parts worth points count: a written part worth 0 points is never "not scored yet".
      if (pointedDone < pointed) { notes.push((pointed - pointedDone) + " of " + pointed + " self-graded part(s) not scored yet."); }
      if (missing) { notes.push(missing + " partial score(s) still need a comment."); }
      pending.textContent = notes.length ? notes.join(" ") : "All self-graded parts scored.";
    }
    return { choices: all, scored: scored, missing: missing, done: done };
  }

  function save() {
    var state = {};
    choices().forEach(function (c) { state[c.part] = { level: c.level, comment: c.comment }; });
    try { window.localStorage.setItem(data.storage_key, JSON.stringify(state)); } catch (e) { /* storage disabled */ }
  }

  function restore() {
    var raw = null;
    try { raw = window.localStorage.getItem(data.storage_key); } catch (e) { raw = null; }
    if (!raw) { return; }
    var state;
    try { state = JSON.parse(raw); } catch (e) { return; }
    selfParts.forEach(function (p) {
      var s = state[p.id];
      if (!s) { return; }
      document.querySelectorAll('input[name="sg-' + p.id + '"]').forEach(function (box) {
        box.checked = s.level !== null && Number(box.value) === s.level;
      });
      document.getElementById("comment-" + p.id).value = typeof s.comment === "string" ? s.comment : "";
    });
  }

  function exportObject() {
    var state = update();
    return {
      format: data.format, assignment: data.assignment, submission: data.submission, sha256: data.sha256,
      seed: data.seed, graded_at: data.graded_at, exported_at: new Date().toISOString(),
      autograded: data.autograded,
      self_graded: state.choices.map(function (c) {
        var part = data.parts.filter(function (p) { return p.id === c.part; })[0];
        return { part: c.part, level: c.level, points: c.points, max_points: part.self_max, comment: c.comment };
      }),
      total: { score: data.autograded.score + state.scored, max: data.autograded.max + selfMax() },
      complete: state.done === state.choices.length && state.missing === 0
    };
  }

  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    if (/^[=+\-@\t\r]/.test(s)) { s = "'" + s; }
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function toCsv(obj) {
    var rows = [["part", "kind", "level", "points", "max_points", "comment"]];
    data.parts.forEach(function (p) { rows.push([p.id, "autograded", "", p.score, p.max, ""]); });
    obj.self_graded.forEach(function (c) { rows.push([c.part, "self-graded", c.level, c.points, c.max_points, c.comment]); });
    rows.push(["total", "", "", obj.total.score, obj.total.max, ""]);
    return rows.map(function (r) { return r.map(csvField).join(","); }).join("\r\n") + "\r\n";
  }

  function download(name, mime, text) {
    var a = document.createElement("a");
    a.href = "data:" + mime + ";charset=utf-8," + encodeURIComponent(text);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function exportAs(kind) {
    var obj = exportObject();
    var stem = (data.submission.replace(/\.ipynb$/i, "") || "submission").replace(/[^\w.-]+/g, "_");
    var status = document.getElementById("export-status");
    if (kind === "json") { download(stem + ".selfgrade.json", "application/json", JSON.stringify(obj, null, 1)); }
    else { download(stem + ".selfgrade.csv", "text/csv", toCsv(obj)); }
    status.textContent = obj.complete ? "Downloaded." : "Downloaded, but the self-grade is not complete yet (see the parts marked above).";
    status.className = "sg-status " + (obj.complete ? "ok" : "bad");
  }

  document.querySelectorAll(".rubric input[type=radio]").forEach(function (box) {
    box.addEventListener("change", function () { update(); save(); });
  });
  document.querySelectorAll(".comment textarea").forEach(function (area) {
    area.addEventListener("input", function () { update(); save(); });
  });
  var bind = function (id, fn) { var el = document.getElementById(id); if (el) { el.addEventListener("click", fn); } };
  bind("export-json", function () { exportAs("json"); });
  bind("export-csv", function () { exportAs("csv"); });
  bind("print-page", function () { window.print(); });
  bind("reset-selfgrade", function () {
    try { window.localStorage.removeItem(data.storage_key); } catch (e) { /* storage disabled */ }
    document.querySelectorAll(".rubric input[type=radio]").forEach(function (box) { box.checked = false; });
    document.querySelectorAll(".comment textarea").forEach(function (area) { area.value = ""; });
    update();
  });
  window.nbgradeSelfGrade = exportObject;
  restore();
  update();
}());
