/*
 * The workbench's audit log panel (/admin, reviewer or admin): who did what and when, filtered by user,
 * action, entry and dates, paged newest first, exported as JSON Lines or CSV with the same filters.
 * Shown when users.js announces a user holding the reviewer or admin role ("workbench-user" event).
 * All text from the service is set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var PAGE = 50;
  var ACTIONS = {
    "login": "登录", "login.failed": "登录失败", "logout": "退出登录", "user.created": "添加用户",
    "user.updated": "修改用户", "user.removed": "删除用户", "user.token_issued": "发放 API 令牌",
    "user.token_revoked": "收回 API 令牌", "publish.started": "开始发布", "publish.done": "发布成功",
    "publish.refused": "发布未通过检查", "publish.failed": "发布失败", "reload": "重新加载索引",
    "reload.refused": "重新加载被拒绝", "rollback": "回滚版本", "audit.exported": "导出审计日志",
    "entry.create": "新建条目", "entry.update": "修改条目", "entry.delete": "删除条目", "entry.disable": "停用条目",
    "entry.enable": "启用条目", "changeset.submit": "提交审核", "changeset.approve": "批准",
    "changeset.send_back": "退回修改", "changeset.supersede": "被新的提交取代"
  };
  var DETAILS_SHOWN = 300;  // characters of a record's details in the table; the whole in its tooltip
  var $ = function (id) { return document.getElementById(id); };
  var offset = 0;

  var el = Workbench.el;

  function filters() {
    var query = new URLSearchParams();
    [["actor", "audit-actor"], ["action", "audit-action"], ["entry", "audit-entry"], ["since", "audit-since"],
     ["until", "audit-until"]].forEach(function (pair) {
      var value = $(pair[1]).value.trim();
      if (value) query.set(pair[0], value);
    });
    return query;
  }

  function exportLinks(query) {
    ["jsonl", "csv"].forEach(function (kind) {
      var withFormat = new URLSearchParams(query);
      withFormat.set("format", kind);
      $("audit-export-" + kind).href = "/admin/api/audit/export?" + withFormat.toString();
    });
  }

  function details(record) {
    var rest = {};
    Object.keys(record).forEach(function (key) {
      if (key !== "time" && key !== "actor" && key !== "action") rest[key] = record[key];
    });
    return Object.keys(rest).length ? JSON.stringify(rest) : "";
  }

  function load() {
    var query = filters();
    exportLinks(query);
    query.set("limit", String(PAGE));
    query.set("offset", String(offset));
    Workbench.call("GET", "/admin/api/audit?" + query.toString()).then(show).catch(function (error) {
      Workbench.showError($("audit"), error);
    });
  }

  function show(answer) {
    var box = $("audit");
    box.textContent = "";
    if (!answer.enabled) {
      box.appendChild(el("p", { "class": "muted" }, "审计日志未开启（RETRIEVER_AUDIT_LOG）。"));
    } else if (!answer.records.length) {
      box.appendChild(el("p", { "class": "muted" }, "没有符合条件的记录。"));
    } else {
      var table = el("table", { id: "audit-table" });
      var head = el("tr");
      ["时间（UTC）", "用户", "操作", "详情"].forEach(function (title) { head.appendChild(el("th", {}, title)); });
      table.appendChild(head);
      answer.records.forEach(function (record) {
        var row = el("tr");
        row.appendChild(el("td", {}, String(record.time || "").replace("T", " ").replace(/\.\d+Z$/, "")));
        row.appendChild(el("td", {}, record.actor === "(anonymous)" ? "（未登录）" : String(record.actor)));
        var action = String(record.action);
        row.appendChild(el("td", { title: action }, ACTIONS[action] ? ACTIONS[action] + "（" + action + "）" : action));
        var text = details(record);
        row.appendChild(el("td", { title: text }, text.length > DETAILS_SHOWN ? text.slice(0, DETAILS_SHOWN) + "…" : text));
        table.appendChild(row);
      });
      box.appendChild(table);
    }
    var last = Math.min(answer.total, offset + answer.records.length);
    $("audit-page").textContent = answer.total ? "第 " + (offset + 1) + "–" + last + " 条，共 " + answer.total + " 条" : "";
    $("audit-newer").disabled = offset === 0;
    $("audit-older").disabled = last >= answer.total;
  }

  $("audit-form").addEventListener("submit", function (event) {
    event.preventDefault();
    offset = 0;
    load();
  });
  $("audit-newer").addEventListener("click", function () { offset = Math.max(0, offset - PAGE); load(); });
  $("audit-older").addEventListener("click", function () { offset += PAGE; load(); });

  document.addEventListener("workbench-user", function (event) {
    var me = event.detail;
    var reader = !!me && me.audit_log && (me.roles.indexOf("reviewer") >= 0 || me.roles.indexOf("admin") >= 0);
    $("audit-panel").hidden = !reader;
    if (reader) { offset = 0; load(); }
  });
})();
