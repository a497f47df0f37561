/*
 * The workbench's 有效期 panel (/admin): entries whose last valid day or next answer version falls in the
 * next N days, entries not valid yet and entries expired (GET /admin/api/expiring). Dates are the
 * service's days (its time zone, docs/validity.md). Shown to any logged-in user ("workbench-user").
 * All text from the service is set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var KINDS = { expires: "到期（最后有效日）", starts: "开始生效", answer_changes: "答案更新",
                not_yet_valid: "尚未生效", expired: "已过期，不再回答" };
  var $ = function (id) { return document.getElementById(id); };

  var el = Workbench.el;

  function when(change) {
    if (change.days_left === 0) return "今天";
    return change.days_left > 0 ? change.days_left + " 天后" : -change.days_left + " 天前";
  }

  function show(answer) {
    var box = $("validity");
    box.textContent = "";
    $("validity-today").textContent = "服务日期：" + answer.today;
    if (!answer.changes.length) {
      box.appendChild(el("p", { "class": "muted" }, "未来 " + answer.days + " 天内没有条目到期、生效或更新答案。"));
      return;
    }
    var table = el("table", { id: "validity-table" });
    var head = el("tr");
    ["日期", "距今", "变化", "条目", "标准问题"].forEach(function (title) { head.appendChild(el("th", {}, title)); });
    table.appendChild(head);
    answer.changes.forEach(function (change) {
      var row = el("tr", { "data-kind": change.kind, "data-faq-id": change.faq_id });
      row.appendChild(el("td", {}, change.date));
      row.appendChild(el("td", {}, when(change)));
      row.appendChild(el("td", {}, KINDS[change.kind] || change.kind));
      row.appendChild(el("td", {}, change.faq_id));
      row.appendChild(el("td", {}, change.question));
      table.appendChild(row);
    });
    box.appendChild(table);
  }

  function load() {
    Workbench.call("GET", "/admin/api/expiring?days=" + encodeURIComponent($("validity-days").value))
      .then(show).catch(function (error) { Workbench.showError($("validity"), error); });
  }

  $("validity-days").addEventListener("change", load);
  document.addEventListener("workbench-user", function (event) {
    $("validity-panel").hidden = !event.detail;
    if (event.detail) load();
  });
})();
