/*
 * The workbench's 命中统计 panel (/admin): every entry of the served index with how often it answered,
 * how often its answer was marked 没帮助 and when it last answered (GET /admin/api/hits), sorted by
 * any of them or with the entries nobody asks about first. Shown to any logged-in user ("workbench-user").
 * All text from the service is set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  var el = Workbench.el;

  function lastHit(seconds) {
    if (seconds === null || seconds === undefined) return "从未";
    return new Date(seconds * 1000).toLocaleString("zh-CN", { hour12: false });
  }

  function show(answer) {
    var box = $("hits");
    box.textContent = "";
    box.appendChild(el("p", { "class": "muted" }, "共 " + answer.total + " 个条目，其中 " + answer.never_hit +
                                                  " 个从未被命中（显示前 " + answer.entries.length + " 个）。"));
    var table = el("table", { id: "hits-table" });
    var head = el("tr");
    ["条目", "标准问题", "分类", "命中次数", "没帮助", "最近命中"].forEach(function (title) {
      head.appendChild(el("th", {}, title));
    });
    table.appendChild(head);
    answer.entries.forEach(function (entry) {
      var row = el("tr", { "data-faq-id": entry.faq_id });
      row.appendChild(el("td", {}, entry.faq_id));
      row.appendChild(el("td", {}, entry.question));
      row.appendChild(el("td", {}, entry.category || ""));
      row.appendChild(el("td", {}, String(entry.hits)));
      row.appendChild(el("td", {}, String(entry.unhelpful)));
      row.appendChild(el("td", {}, lastHit(entry.last_hit)));
      table.appendChild(row);
    });
    box.appendChild(table);
  }

  function load() {
    Workbench.call("GET", "/admin/api/hits?sort=" + encodeURIComponent($("hits-sort").value))
      .then(show).catch(function (error) { Workbench.showError($("hits"), error); });
  }

  $("hits-sort").addEventListener("change", load);
  $("hits-refresh").addEventListener("click", load);
  document.addEventListener("workbench-user", function (event) {
    $("hits-panel").hidden = !event.detail;
    if (event.detail) load();
  });
})();
