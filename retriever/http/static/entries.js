/*
 * The workbench's entry editor (/admin, the "条目管理" panel): list and search the draft's entries, open one,
 * edit it, add, disable or delete one; and "测试查询": what the draft would answer before it is published.
 * Saving sends the version the editor started from: when someone else saved meanwhile the service answers
 * 409 with both versions, shown side by side, and the editor's text stays in the form.
 * Shown when users.js announces a logged-in user ("workbench-user"); writes need the editor role.
 * All text from the service is set with textContent, never parsed as HTML (answers may hold Markdown links:
 * here they are text to edit).
 */
(function () {
  "use strict";

  var PAGE = 20;
  var DECISIONS = { answer: "回答", ambiguous: "需确认", no_match: "未匹配" };
  var ROLES = { answer: "答案", alternative: "备选", suggestion: "建议", candidate: "候选" };
  var FIELDS = { question: "标准问题", paraphrases: "相似问题", answer: "答案", category: "分类", tags: "标签",
                 negatives: "负例", valid_from: "生效日期", valid_until: "失效日期", enabled: "启用" };
  var MATCHED = { question: "标准问题", paraphrase: "相似问题", answer: "答案" };
  var LISTS = ["paraphrases", "tags", "negatives"];
  var $ = function (id) { return document.getElementById(id); };
  var state = { offset: 0, open: null, editor: false };  // open: the entry as loaded (its version is the base)

  var el = Workbench.el;
  var api = Workbench.request;  // {status, ok, body} for every answer: the callers decide what a 409 means

  function failure(result) {
    return result.body.message || "HTTP " + result.status;
  }

  function say(text, isError) {
    $("entries-notice").textContent = text;
    $("entries-notice").className = "notice" + (isError ? " error" : "");
  }

  function lines(value) {
    return value.split("\n").map(function (line) { return line.trim(); }).filter(Boolean);
  }

  function shown(value) {
    if (value === null || value === undefined || value === "") return "（无）";
    if (Array.isArray(value)) return value.join("\n") || "（无）";
    if (typeof value === "boolean") return value ? "是" : "否";
    return String(value);
  }

  // --- the list -------------------------------------------------------------------------------------

  function fillSelect(select, values, label) {
    var chosen = select.value;
    select.textContent = "";
    select.append(el("option", { value: "" }, label));
    values.forEach(function (value) { select.append(el("option", { value: value }, value)); });
    select.value = values.indexOf(chosen) >= 0 ? chosen : "";
  }

  function load() {
    var params = new URLSearchParams({ offset: state.offset, limit: PAGE });
    [["q", "entries-q"], ["category", "entries-category"], ["tag", "entries-tag"], ["status", "entries-status"]]
      .forEach(function (pair) { if ($(pair[1]).value) params.set(pair[0], $(pair[1]).value); });
    return api("GET", "/admin/api/entries?" + params).then(function (result) {
      if (!result.ok) { say("无法加载条目：" + failure(result), true); return; }
      renderList(result.body);
    });
  }

  function renderList(data) {
    fillSelect($("entries-category"), data.categories, "全部分类");
    fillSelect($("entries-tag"), data.tags, "全部标签");
    var body = $("entries-rows");
    body.textContent = "";
    data.entries.forEach(function (entry) {
      var row = el("tr", { "data-faq-id": entry.id, class: entry.enabled ? "" : "entry-disabled" });
      row.append(el("td", {}, entry.id), el("td", {}, entry.question), el("td", {}, entry.category || ""),
                 el("td", {}, entry.enabled ? "启用" : "停用"), el("td", { class: "muted" }, entry.file));
      var open = el("button", { type: "button", class: "entry-open" }, "打开");
      open.addEventListener("click", function () { openEntry(entry.id); });
      var cell = el("td");
      cell.append(open);
      row.append(cell);
      body.append(row);
    });
    var last = Math.min(data.offset + data.entries.length, data.total);
    $("entries-page").textContent = data.total ? "第 " + (data.offset + 1) + "–" + last + " 条，共 " + data.total + " 条"
                                               : "没有符合条件的条目";
    $("entries-prev").disabled = data.offset === 0;
    $("entries-next").disabled = last >= data.total;
  }

  // --- the editor -----------------------------------------------------------------------------------

  function fill(entry) {
    $("entry-id").value = entry.id || "";
    $("entry-id").readOnly = !!entry.version;
    $("entry-question").value = entry.question || "";
    $("entry-answer").value = entry.answer || "";
    $("entry-category").value = entry.category || "";
    $("entry-valid-from").value = entry.valid_from || "";
    $("entry-valid-until").value = entry.valid_until || "";
    LISTS.forEach(function (name) { $("entry-" + name).value = (entry[name] || []).join("\n"); });
  }

  function showEditor(entry) {
    state.open = entry;
    $("entry-conflict").hidden = true;
    $("entry-editor").hidden = false;
    $("entry-title").textContent = entry.version ? "编辑条目 " + entry.id : "新建条目";
    $("entry-meta").textContent = entry.version
      ? "文件 " + entry.file + " · 版本 " + entry.version + " · " + (entry.enabled ? "启用" : "已停用（不会被回答）") +
        // Dated answers are kept as they are (the form does not send them); they are edited in the file.
        (entry.answer_versions ? " · " + entry.answer_versions.length + " 个按日期生效的答案版本（在语料文件中修改）" : "")
      : "";
    $("entry-toggle").hidden = $("entry-delete").hidden = !entry.version || !state.editor;
    $("entry-save").hidden = !state.editor;  // a reviewer reads entries; writing needs the editor role
    $("entry-toggle").textContent = entry.enabled === false ? "启用" : "停用";
    fill(entry);
  }

  function openEntry(id) {
    return api("GET", "/admin/api/entries/" + encodeURIComponent(id)).then(function (result) {
      if (!result.ok) { say(failure(result), true); return; }
      say("");
      showEditor(result.body);
    });
  }

  function formFields() {
    var fields = { question: $("entry-question").value.trim(), answer: $("entry-answer").value.trim(),
                   category: $("entry-category").value.trim() || null,
                   valid_from: $("entry-valid-from").value || null, valid_until: $("entry-valid-until").value || null };
    LISTS.forEach(function (name) { fields[name] = lines($("entry-" + name).value); });
    return fields;
  }

  function save() {
    var fields = formFields();
    var entry = state.open;
    var request = entry.version
      ? api("PUT", "/admin/api/entries/" + encodeURIComponent(entry.id), Object.assign({ version: entry.version }, fields))
      : api("POST", "/admin/api/entries", Object.assign($("entry-id").value.trim() ? { id: $("entry-id").value.trim() } : {},
                                                         fields));
    return request.then(function (result) {
      if (result.status === 409 && result.body.error === "version_conflict") { showConflict(result.body); return; }
      if (!result.ok) { say("没有保存：" + failure(result), true); return; }
      say("已保存 " + result.body.id + "（发布后生效）");
      showEditor(result.body);
      load();
    });
  }

  // Someone saved first: both versions side by side; the form keeps what this editor wrote.
  function showConflict(body) {
    var table = $("entry-conflict-rows");
    table.textContent = "";
    var mine = formFields();
    Object.keys(FIELDS).forEach(function (name) {
      var current = body.current ? body.current[name] : null;
      var yours = name in mine ? mine[name] : body.submitted[name];
      var row = el("tr", { "data-field": name });
      if (JSON.stringify(current) !== JSON.stringify(yours)) row.className = "differs";
      row.append(el("th", { scope: "row" }, FIELDS[name]), el("td", { class: "conflict-current" }, shown(current)),
                 el("td", { class: "conflict-mine" }, shown(yours)));
      table.append(row);
    });
    state.conflict = body.current;
    $("entry-conflict-message").textContent = body.message;
    $("entry-conflict").hidden = false;
    $("entry-overwrite").hidden = !body.current;
    say("没有保存：" + body.message, true);
  }

  function overwrite() {  // keep my text, based on the version now saved
    state.open = Object.assign({}, state.open, { version: state.conflict.version });
    $("entry-conflict").hidden = true;
    return save();
  }

  function takeCurrent() {
    $("entry-conflict").hidden = true;
    showEditor(state.conflict);
    say("已载入当前版本");
  }

  function toggle() {
    var entry = state.open;
    var action = entry.enabled === false ? "enable" : "disable";
    return api("POST", "/admin/api/entries/" + encodeURIComponent(entry.id) + "/" + action, { version: entry.version })
      .then(function (result) {
        if (result.status === 409 && result.body.error === "version_conflict") { showConflict(result.body); return; }
        if (!result.ok) { say(failure(result), true); return; }
        say(action === "enable" ? "已启用（发布后生效）" : "已停用：发布后不再回答这个条目");
        showEditor(result.body);
        load();
      });
  }

  function remove() {
    var entry = state.open;
    if (!window.confirm("确定删除条目 " + entry.id + "？\n" + entry.question)) return Promise.resolve();
    return api("DELETE", "/admin/api/entries/" + encodeURIComponent(entry.id) + "?version=" + encodeURIComponent(entry.version))
      .then(function (result) {
        if (result.status === 409 && result.body.error === "version_conflict") { showConflict(result.body); return; }
        if (!result.ok) { say(failure(result), true); return; }
        say("已删除 " + entry.id + "（发布后生效）");
        $("entry-editor").hidden = true;
        state.open = null;
        load();
      });
  }

  // --- test a query against the draft --------------------------------------------------------------

  function percent(value) {
    return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%";
  }

  function testQuery() {
    var box = $("draft-result");
    box.textContent = "";
    box.append(el("p", { class: "muted" }, "正在查询草稿…"));
    return api("POST", "/admin/api/draft/search", { query: $("draft-query").value }).then(function (result) {
      box.textContent = "";
      if (!result.ok) { box.append(el("p", { class: "error" }, failure(result))); return; }
      var data = result.body;
      box.setAttribute("data-decision", data.decision);
      box.append(el("p", { class: "draft-decision" }, "判定：" + (DECISIONS[data.decision] || data.decision) +
        " · 置信度 " + percent(data.confidence) + (data.confidence_threshold !== null ? "（阈值 " + percent(data.confidence_threshold) + "）" : "") +
        " · 分数阈值 " + (data.threshold === null ? "—" : data.threshold.toFixed(3))));
      box.append(el("p", { class: "muted" }, "按草稿回答（尚未发布，共 " + data.draft.entries + " 个启用条目）；判定参数来自正在服务的版本 " +
        data.draft.decision_parameters + "。"));
      var list = el("ol", { class: "draft-hits" });
      data.results.forEach(function (hit) {
        var item = el("li", { "data-faq-id": hit.faq_id });
        item.append(el("strong", {}, "[" + hit.faq_id + "] " + hit.question));
        item.append(el("span", { class: "muted" }, " — " + (ROLES[hit.metadata.role] || hit.metadata.role) + "，分数 " + hit.score.toFixed(3) +
          (hit.confidence !== null && hit.confidence !== undefined ? "，置信度 " + percent(hit.confidence) : "")));
        var why = "匹配" + (MATCHED[hit.matched_field] || hit.matched_field) + "「" + hit.matched_text + "」";
        if (hit.negative_example) why += "；更接近负例「" + hit.negative_example + "」，不回答";
        item.append(el("div", { class: "muted draft-why" }, why));
        item.append(el("div", { class: "draft-answer" }, hit.answer));
        list.append(item);
      });
      box.append(list);
      if (!data.results.length) box.append(el("p", { class: "muted" }, "没有候选条目。"));
    });
  }

  // --- wiring ---------------------------------------------------------------------------------------

  $("entries-search").addEventListener("submit", function (event) { event.preventDefault(); state.offset = 0; load(); });
  ["entries-category", "entries-tag", "entries-status"].forEach(function (id) {
    $(id).addEventListener("change", function () { state.offset = 0; load(); });
  });
  $("entries-prev").addEventListener("click", function () { state.offset = Math.max(0, state.offset - PAGE); load(); });
  $("entries-next").addEventListener("click", function () { state.offset += PAGE; load(); });
  $("entries-new").addEventListener("click", function () { say(""); showEditor({ enabled: true }); $("entry-question").focus(); });
  $("entry-editor").addEventListener("submit", function (event) { event.preventDefault(); save(); });
  $("entry-toggle").addEventListener("click", toggle);
  $("entry-delete").addEventListener("click", remove);
  $("entry-close").addEventListener("click", function () { $("entry-editor").hidden = true; state.open = null; });
  $("entry-overwrite").addEventListener("click", overwrite);
  $("entry-take-current").addEventListener("click", takeCurrent);
  $("draft-form").addEventListener("submit", function (event) { event.preventDefault(); testQuery(); });

  document.addEventListener("workbench-user", function (event) {
    var me = event.detail;
    $("entries-panel").hidden = !me;
    if (!me) return;
    state.editor = me.roles.indexOf("editor") >= 0 || me.roles.indexOf("admin") >= 0;
    $("entries-new").hidden = !state.editor;
    state.offset = 0;
    load();
  });
})();
