/*
 * Review before publish (/admin, the "待审核" panel): editors submit the draft as a change set with a
 * comment; reviewers read its diff entry by entry and approve it or send it back with a comment; the
 * publish button is enabled only for the approved change set while the draft is still what was approved.
 * The panel follows the "workbench-user" event (users.js). All text from the service is set with
 * textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var CHANGES = { added: "新增", changed: "修改", removed: "删除" };
  var FIELDS = { question: "标准问题", answer: "答案", paraphrases: "相似问题", negatives: "负例", category: "分类",
                 tags: "标签", enabled: "启用", valid_from: "生效日期", valid_until: "失效日期",
                 answer_versions: "答案版本" };
  var $ = function (id) { return document.getElementById(id); };
  var me = null;
  var review = { required: false, self_approval: false };

  var el = Workbench.el, api = Workbench.call;

  function say(text, isError) {
    $("review-notice").textContent = text;
    $("review-notice").className = "notice" + (isError ? " error" : "");
  }

  function holds(role) {
    return !!me && (me.roles.indexOf(role) >= 0 || me.roles.indexOf("admin") >= 0);
  }

  // --- a field's value, before and after, as text ----------------------------------------------

  function shown(value) {
    if (value === null || value === undefined || value === "") return "（无）";
    if (Array.isArray(value)) {
      return value.map(function (item) { return typeof item === "string" ? item : JSON.stringify(item); }).join("\n");
    }
    if (typeof value === "boolean") return value ? "是" : "否";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function fieldRow(name, change) {
    var row = el("tr", { "data-field": name });
    row.append(el("th", { scope: "row" }, FIELDS[name] || name));
    if (change.added || change.removed) {  // a list: what came and went, then the whole list after
      var cell = el("td", { colspan: "2" });
      (change.added || []).forEach(function (text) {
        cell.append(el("div", { class: "diff-added" }, "+ " + text));
      });
      (change.removed || []).forEach(function (text) {
        cell.append(el("div", { class: "diff-removed" }, "− " + text));
      });
      if (!(change.added || []).length && !(change.removed || []).length) cell.append(el("div", {}, "顺序调整"));
      row.append(cell);
    } else {
      row.append(el("td", { class: "diff-before" }, shown(change.before)),
                 el("td", { class: "diff-after" }, shown(change.after)));
    }
    return row;
  }

  function entryDiff(change) {
    var item = el("li", { class: "entry-change", "data-faq-id": change.faq_id, "data-change": change.change });
    item.append(el("strong", {}, CHANGES[change.change] + " [" + change.faq_id + "] "),
                document.createTextNode(change.question));
    var table = el("table", { class: "diff" });
    var head = el("tr", {});
    ["字段", "修改前", "修改后"].forEach(function (h) { head.append(el("th", { scope: "col" }, h)); });
    table.append(head);
    Object.keys(change.fields).forEach(function (name) { table.append(fieldRow(name, change.fields[name])); });
    item.append(table);
    return item;
  }

  function diffList(changeset) {
    var list = el("ul", { class: "entry-changes" });
    changeset.changes.forEach(function (change) { list.append(entryDiff(change)); });
    return list;
  }

  // --- one change set ---------------------------------------------------------------------------

  function describe(changeset) {
    var counts = changeset.counts;
    var parts = [];
    if (counts.added) parts.push("新增 " + counts.added + " 条");
    if (counts.changed) parts.push("修改 " + counts.changed + " 条");
    if (counts.removed) parts.push("删除 " + counts.removed + " 条");
    return parts.join("，");
  }

  function card(changeset, isOpen) {
    var box = el("article", { class: "changeset", "data-id": changeset.id, "data-status": changeset.status });
    var title = el("h3", {}, changeset.status_label + " · " + describe(changeset));
    box.append(title);
    box.append(el("p", { class: "muted" }, "提交人 " + changeset.author + "，" + changeset.submitted_at +
                                           (changeset.comment ? "：" : "")));
    if (changeset.comment) box.lastChild.append(el("q", { class: "submit-comment" }, changeset.comment));
    if (changeset.reviewer) {
      var verdict = changeset.status === "sent_back" ? "退回" : "批准";
      var line = el("p", { class: "review-comment" + (changeset.status === "sent_back" ? " error" : "") },
                    "审核人 " + changeset.reviewer + " " + verdict + "（" + changeset.reviewed_at + "）");
      if (changeset.review_comment) line.append("：", el("q", {}, changeset.review_comment));
      box.append(line);
    }
    if (changeset.last_publish && changeset.status === "approved" && changeset.last_publish.state !== "done") {
      box.append(el("p", { class: "error last-publish" }, "上次发布未成功：" + (changeset.last_publish.message || "")));
    }
    if (changeset.status === "published") {
      box.append(el("p", { class: "published" }, "已发布为版本 " + changeset.published_version + "（" +
                                                 changeset.published_by + "，" + changeset.published_at + "）"));
    }
    if (isOpen && !changeset.draft_matches) {
      box.append(el("p", { class: "error stale" }, "提交之后草稿又有修改：请重新提交审核。"));
    }
    var details = el("details", { class: "changes" });
    details.append(el("summary", {}, "查看修改内容"));
    details.addEventListener("toggle", function () {
      if (details.open && !details.dataset.loaded) loadDiff(changeset.id, details);
    });
    box.append(details);
    if (isOpen) {
      details.open = true;
      box.append(actions(changeset));
    }
    return box;
  }

  function loadDiff(id, details) {
    details.dataset.loaded = "1";
    api("GET", "/admin/api/changesets/" + encodeURIComponent(id)).then(function (full) {
      details.append(diffList(full));
    }).catch(function (error) { details.append(el("p", { class: "error" }, error.message)); });
  }

  function actions(changeset) {
    var box = el("div", { class: "actions review-actions" });
    if (changeset.status === "submitted" && holds("reviewer")) {
      var own = me && changeset.author === me.user && !review.self_approval;
      var approve = el("button", { type: "button", class: "primary", "data-action": "approve" }, "批准");
      approve.disabled = own || !changeset.draft_matches;
      approve.addEventListener("click", function () { step(changeset.id, "approve", {}); });
      var comment = el("input", { type: "text", class: "send-back-comment", maxlength: "2000",
                                  "aria-label": "退回意见", placeholder: "退回意见：需要修改什么" });
      var back = el("button", { type: "button", "data-action": "send-back" }, "退回");
      back.addEventListener("click", function () { step(changeset.id, "send-back", { comment: comment.value }); });
      box.append(approve, comment, back);
      if (own) box.append(el("span", { class: "muted" }, "不能批准自己提交的修改，请由另一位审核人批准。"));
    } else if (changeset.status === "submitted") {
      box.append(el("span", { class: "muted" }, "等待审核人批准。"));
    }
    return box;
  }

  function step(id, action, body) {
    api("POST", "/admin/api/changesets/" + encodeURIComponent(id) + "/" + action, body).then(function () {
      say(action === "approve" ? "已批准，可以发布。" : "已退回给编辑。");
      load();
    }).catch(function (error) {
      say(error.message, true);  // names the entries when the draft changed since the submission
      load();
    });
  }

  // --- the panel ----------------------------------------------------------------------------------

  function render(data) {
    review = data.review;
    var box = $("changesets");
    box.textContent = "";
    $("review-mode").textContent = review.required ? "发布前需要审核人批准变更集。" : "未开启发布前审核：也可以直接发布。";
    $("review-submit").hidden = !holds("editor");
    if (data.draft.corpus_error) box.append(el("p", { class: "error" }, data.draft.corpus_error));
    if (!data.changesets.length) box.append(el("p", { class: "muted" }, "还没有提交过变更集。"));
    var open = null;
    data.changesets.forEach(function (changeset, index) {
      var isOpen = changeset.id === data.open;
      if (isOpen) open = changeset;
      if (isOpen || index < 10) box.append(card(changeset, isOpen));
    });
    var publishable = !!open && open.status === "approved" && open.draft_matches;
    var button = $("review-publish");
    button.hidden = !review.required;
    button.disabled = !publishable;
    // With review on, the approved change set is published from here: the plain button would only be refused.
    if ($("publish")) $("publish").hidden = review.required;
  }

  function load() {
    if (!me) return Promise.resolve();
    return api("GET", "/admin/api/changesets").then(render).catch(function (error) {
      $("changesets").textContent = "";
      $("changesets").append(el("p", { class: "error" }, "无法加载：" + error.message));
    });
  }

  $("review-submit").addEventListener("submit", function (event) {
    event.preventDefault();
    var comment = $("review-comment").value;
    api("POST", "/admin/api/changesets", { comment: comment }).then(function (changeset) {
      $("review-comment").value = "";
      say("已提交审核：" + describe(changeset) + (changeset.superseded ? "（取代了之前未完成的提交）" : "") + "。");
      load();
    }).catch(function (error) { say(error.message, true); });
  });

  $("review-refresh").addEventListener("click", function () { load(); });

  $("review-publish").addEventListener("click", function () {
    $("review-publish").disabled = true;
    $("publish").click();  // workbench.js runs the job and shows its stages and the gate's result
    watch();
  });

  function watch() {
    setTimeout(function () {
      api("GET", "/admin/api/publish").then(function (status) {
        if (status.state === "running") { watch(); return; }
        say(status.state === "done" ? "" : "没有发布：见下方“发布”中的原因。", status.state !== "done");
        load();
      }).catch(function () { load(); });
    }, POLL_MS);
  }

  document.addEventListener("workbench-user", function (event) {
    me = event.detail;
    var allowed = holds("editor") || holds("reviewer");
    $("review-panel").hidden = !allowed;
    if (allowed) load();
  });
})();
