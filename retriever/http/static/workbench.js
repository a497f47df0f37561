/*
 * The FAQ editors' workbench (/admin): log in, place unmatched queries, publish.
 * Every request carries X-Requested-With: workbench (the service refuses a session POST without it).
 * All text from the service is set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var DECISIONS = { answer: "回答", ambiguous: "需确认", no_match: "未匹配" };
  var ACTIONS = { paraphrase: "相似问题", negative: "负例", candidate: "新条目候选" };
  var $ = function (id) { return document.getElementById(id); };

  // Bidirectional controls (U+202E ...) in a citizen's text would reverse the rest of its line: each text
  // from outside is shown with them as visible marks, isolated (FSI ... PDI) so that even right-to-left
  // script stays inside it.
  var BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function iso(text) {
    return "\u2068" + String(text).replace(BIDI_CONTROLS, function (c) {
      return "[U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "]";
    }) + "\u2069";
  }

  var el = Workbench.el;

  function api(method, path, body) {
    return Workbench.request(method, path, body).then(function (result) {
      if (result.status === 401 && path !== "/admin/login") showLogin();
      if (!result.ok) throw new Error(result.body.message ? iso(result.body.message) : "HTTP " + result.status);
      return result.body;
    });
  }

  function notice(text, isError) {
    var box = $("notice");
    box.textContent = text;
    box.className = "notice" + (isError ? " error" : "");
  }

  // --- login ------------------------------------------------------------------------------------

  function showLogin(enabled) {
    $("bench").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("disabled").hidden = enabled !== false;
    $("login-name").focus();
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    $("login-error").textContent = "";
    var name = $("login-name").value.trim();  // a user's name and password, else the admin token (users.js)
    api("POST", "/admin/login", name ? { name: name, password: $("login-password").value } : { token: $("token").value })
      .then(function () { $("token").value = ""; $("login-password").value = ""; showBench(); })
      .catch(function (error) { $("login-error").textContent = error.message; });
  });

  $("logout").addEventListener("click", function () {
    api("POST", "/admin/logout").then(function () { showLogin(); });
  });

  // The panels below need the editor role: shown, and loaded, once users.js says who is logged in
  // (GET /admin/api/me, its "workbench-user" event); a reviewer sees review, entries and publishing only.
  var EDITOR_PANELS = ["groups", "pending", "conflicts"];
  var mayEdit = false;

  function showBench() {
    $("login").hidden = true;
    $("bench").hidden = false;
    $("logout").hidden = false;
    showEditorPanels(false);
    api("GET", "/admin/api/publish").then(showPublish).catch(function () {});
  }

  function showEditorPanels(shown) {
    EDITOR_PANELS.forEach(function (id) { $(id).parentNode.hidden = !shown; });
  }

  function loadEditorPanels() {
    if (!mayEdit) return;
    loadGroups();
    loadPending();
    loadConflicts();
  }

  document.addEventListener("workbench-user", function (event) {
    var roles = event.detail ? event.detail.roles : [];
    mayEdit = roles.indexOf("editor") >= 0 || roles.indexOf("admin") >= 0;
    showEditorPanels(mayEdit);
    loadEditorPanels();
  });

  // --- groups -----------------------------------------------------------------------------------

  function loadGroups() {
    return api("GET", "/admin/api/groups").then(renderGroups).catch(function (error) {
      $("groups").textContent = "";
      $("groups").append(el("p", { class: "error" }, "无法加载：" + error.message));
    });
  }

  function renderGroups(data) {
    var box = $("groups");
    box.textContent = "";
    if (!data.sources.unmatched_log && !data.sources.feedback_log) {
      box.append(el("p", { class: "muted" }, "服务没有记录未匹配的查询或反馈（RETRIEVER_UNMATCHED_LOG、RETRIEVER_FEEDBACK_LOG）。"));
    }
    if (!data.groups.length) {
      box.append(el("p", { class: "muted" }, "没有待处理的问题。"));
      return;
    }
    data.groups.forEach(function (group) { box.append(groupCard(group, data.entries)); });
  }

  function groupCard(group, entries) {
    var leader = group.texts[0].text;
    var card = el("article", { class: "group", "data-group": group.id, "data-text": leader });
    var title = el("h3", {}, iso(leader));
    title.append(el("span", { class: "count" }, "共 " + group.count + " 次"));
    var texts = el("ul", { class: "texts" });
    group.texts.forEach(function (item) {
      var parts = [];
      if (item.unmatched) parts.push("未匹配 " + item.unmatched + " 次");
      if (item.unhelpful) parts.push("没帮助 " + item.unhelpful + " 次（" + Object.keys(item.unhelpful_faq_ids).join("、") + "）");
      texts.append(el("li", {}, iso(item.text) + " — " + parts.join("，")));
    });
    var closest = el("ol", { class: "closest" });
    group.closest.forEach(function (hit) {
      closest.append(el("li", {}, "[" + hit.faq_id + "] " + iso(hit.question) + "（相似度 " + hit.score.toFixed(3) + "）"));
    });
    var select = el("select", { class: "entry", "aria-label": "选择条目" });
    var first = group.closest.length ? group.closest[0].faq_id : null;
    entries.forEach(function (entry) {
      var option = el("option", { value: entry.id }, entry.id + " " + iso(entry.question.slice(0, 30)));
      if (entry.id === first) option.selected = true;
      select.append(option);
    });
    var actions = el("div", { class: "actions" });
    actions.append(el("label", {}, "条目"), select);
    Object.keys(ACTIONS).forEach(function (action) {
      var button = el("button", { type: "button", "data-action": action },
                      action === "candidate" ? "作为新条目候选" : "添加为" + ACTIONS[action]);
      button.addEventListener("click", function () { assign(card, action, select.value, group.texts); });
      actions.append(button);
    });
    card.append(title, texts, el("p", { class: "muted" }, "最接近的条目："), closest, actions);
    return card;
  }

  function assign(card, action, faqId, texts) {
    card.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    var body = { action: action, texts: texts.map(function (t) { return t.text; }) };
    if (action !== "candidate") body.faq_id = faqId;
    api("POST", "/admin/api/assign", body).then(function (result) {
      var target = action === "candidate" ? "新条目候选" : faqId + " 的" + ACTIONS[action];
      var message = result.added.length ? "已将 " + result.added.length + " 个问题添加为 " + target + "。" : "没有新的修改。";
      result.skipped.forEach(function (s) { message += " “" + iso(s.text) + "”：" + s.reason + "。"; });
      notice(message);
      loadGroups();
      loadPending();
    }).catch(function (error) {
      notice(error.message, true);
      card.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    });
  }

  // --- pending changes --------------------------------------------------------------------------

  function loadPending() {
    return api("GET", "/admin/api/pending").then(renderPending).catch(function (error) {
      $("pending").textContent = "";
      $("pending").append(el("p", { class: "error" }, "无法加载：" + error.message));
    });
  }

  function describe(change) {
    if (change.change === "added") return "新条目";
    if (change.change === "removed") return "已删除的条目";
    var parts = [];
    [["paraphrases", "相似问题"], ["negatives", "负例"]].forEach(function (pair) {
      var diff = change[pair[0]];
      if (!diff) return;
      if (diff.added.length) parts.push("新增" + pair[1] + "：" + diff.added.map(quote).join("、"));
      if (diff.removed.length) parts.push("删除" + pair[1] + "：" + diff.removed.map(quote).join("、"));
    });
    if (change.fields && change.fields.length) parts.push("修改了 " + change.fields.join("、"));
    return parts.join("；");
  }

  function quote(text) { return "“" + iso(text) + "”"; }

  function renderPending(data) {
    var box = $("pending");
    box.textContent = "";
    if (data.corpus_error) box.append(el("p", { class: "error" }, iso(data.corpus_error)));
    box.append(el("p", { class: "muted" }, "正在服务的版本：" + data.served_version));
    if (!data.changes.length) box.append(el("p", {}, "语料与正在服务的索引一致，没有待发布的修改。"));
    var list = el("ul", { id: "changes" });
    data.changes.forEach(function (change) {
      list.append(el("li", { "data-faq-id": change.faq_id }, "[" + change.faq_id + "] " + iso(change.question) + " — " + describe(change)));
    });
    if (data.changes.length) box.append(list);
    if (data.candidates.length) {
      box.append(el("p", {}, "新条目候选（不会发布，供编写新条目参考）："));
      var candidates = el("ul", {});
      data.candidates.forEach(function (c) { candidates.append(el("li", {}, iso(c.query) + "（" + c.count + " 次）")); });
      box.append(candidates);
    }
  }

  // --- conflicts between entries ----------------------------------------------------------------

  function loadConflicts() {
    return api("GET", "/admin/api/conflicts").then(renderConflicts).catch(function (error) {
      $("conflicts").textContent = "";
      $("conflicts").append(el("p", { class: "error" }, "无法加载：" + error.message));
    });
  }

  function conflictList(title, items, id, isError) {
    var box = el("div", {});
    box.append(el("p", { class: isError ? "error" : "" }, title + "（" + items.length + "）："));
    var list = el("ul", { id: id });
    items.forEach(function (item) {
      var ids = item.faq_ids || [item.faq_id, item.other_faq_id];
      list.append(el("li", { "data-faq-ids": ids.join(" ") }, iso(item.message)));
    });
    box.append(list);
    return box;
  }

  function renderConflicts(data) {
    var box = $("conflicts");
    box.textContent = "";
    if (data.corpus_error) box.append(el("p", { class: "error" }, iso(data.corpus_error)));
    if (data.corpus_identical_texts.length) {
      box.append(conflictList("语料中同一问法属于多个条目，修正后才能发布", data.corpus_identical_texts,
                              "corpus-conflicts", true));
    }
    if (!data.checked) {
      box.append(el("p", { class: "muted" }, "正在服务的版本 " + data.served_version + " 构建时还没有冲突检查；重新发布后可见。"));
      return;
    }
    if (data.identical_texts.length) {
      box.append(conflictList("正在服务的版本中强制发布的冲突问法", data.identical_texts, "served-conflicts", true));
    }
    if (data.closer_elsewhere_texts.length) {
      box.append(conflictList("相似问题更接近其他条目，请确认它们放在了正确的条目下", data.closer_elsewhere_texts,
                              "closer-elsewhere", false));
    }
    if (!box.childNodes.length) box.append(el("p", {}, "没有发现冲突。"));
  }

  // --- publishing -------------------------------------------------------------------------------

  $("publish").addEventListener("click", function () { startPublish(false); });

  function startPublish(force) {
    $("publish").disabled = true;
    $("publish-result").textContent = "";
    api("POST", "/admin/api/publish", { force: force }).then(function (status) {
      showPublish(status);
      poll();
    }).catch(function (error) {
      $("publish").disabled = false;
      $("publish-result").append(el("p", { class: "error" }, error.message));
    });
  }

  function poll() {
    setTimeout(function () {
      api("GET", "/admin/api/publish").then(function (status) {
        showPublish(status);
        if (status.state === "running") {
          poll();
        } else {
          loadEditorPanels();
        }
      }).catch(function (error) { notice(error.message, true); });
    }, POLL_MS);
  }

  function showStages(status) {
    var stages = $("stages");
    stages.textContent = "";
    var at = status.stages.map(function (s) { return s.id; }).indexOf(status.stage);
    if (status.state === "done") at = status.stages.length;
    status.stages.forEach(function (stage, index) {
      var state = index < at ? "done" : (index === at && status.state === "running" ? "current" : "");
      stages.append(el("li", { class: state, "data-stage": stage.id }, stage.label));
    });
    $("progress").hidden = status.state !== "running";
    $("progress").value = Math.max(at, 0) + 0.5;
  }

  function showPublish(status) {
    $("publish").disabled = status.state === "running";
    $("publish").textContent = status.state === "running" ? "正在发布…" : "重新构建并发布";
    if (status.state === "idle") return;
    showStages(status);
    var box = $("publish-result");
    box.textContent = "";
    box.dataset.state = status.state;
    if (status.state === "running") {
      box.append(el("p", {}, "正在进行：" + status.stages.filter(function (s) { return s.id === status.stage; })[0].label + "…"));
    } else if (status.state === "done") {
      box.append(el("p", { class: "published" }, "已发布并上线：版本 " + status.version + "。"));
      if (status.interrupted) box.append(el("p", { class: "muted" }, iso(status.message)));
      if (status.all_workers === false) {
        box.append(el("p", { class: "error" }, "部分工作进程仍在服务旧版本，它们会在几秒内跟上。"));
      }
      box.append(gateSummary(status.gate));
    } else if (status.state === "refused") {
      box.append(el("p", { class: "error" }, iso(status.message) + "。"));
      if (status.gate) box.append(gateSummary(status.gate), changedTable(status.gate));
      var force = el("button", { type: "button", id: "force" }, "仍然发布（将记录在版本清单中）");
      force.addEventListener("click", function () { startPublish(true); });
      box.append(force);
    } else {
      box.append(el("p", { class: "error" }, iso(status.message)));
    }
    if (status.conflicts && mayEdit) loadConflicts();
  }

  function share(count, total) {
    return count + "/" + total + (total ? "（" + (100 * count / total).toFixed(1) + "%）" : "");
  }

  function gateSummary(gate) {
    if (!gate) return el("p", {}, "");
    if (gate.skipped) return el("p", { class: "muted" }, "发布检查：没有标注问题（labelled.jsonl），未检查。");
    var text = "发布检查：标注问题答对 " + share(gate.right_after, gate.in_domain) +
               "，领域外问题拦截 " + share(gate.caught_after, gate.out_of_domain);
    if (gate.served_version) {
      text += "；之前的版本：答对 " + share(gate.right_before, gate.in_domain) +
              "，拦截 " + share(gate.caught_before, gate.out_of_domain);
    }
    if (gate.forced) text += "。未通过检查，按编辑的要求强制发布（已记录在版本清单中）";
    return el("p", { class: gate.passed ? "gate" : "gate error" }, text + "。");
  }

  function what(outcome) {
    var parts = outcome.split(" ");
    return DECISIONS[parts[0]] + (parts[1] ? " " + parts[1] : "");
  }

  function changedTable(gate) {
    var table = el("table", { id: "changed" });
    var head = el("tr", {});
    ["标注问题", "应答条目", "之前", "之后", ""].forEach(function (h) { head.append(el("th", {}, h)); });
    table.append(head);
    [[gate.broken, "变错"], [gate.fixed, "变对"]].forEach(function (pair) {
      pair[0].forEach(function (change) {
        var row = el("tr", {});
        [change.query, change.expected || "（领域外，不应回答）", what(change.before), what(change.after), pair[1]]
          .forEach(function (cell) { row.append(el("td", {}, cell)); });
        table.append(row);
      });
    });
    return table;
  }

  api("GET", "/admin/api/session").then(function (info) {
    if (info.editor) showBench(); else showLogin(info.enabled);
  }).catch(function (error) { showLogin(); $("login-error").textContent = error.message; });
})();
