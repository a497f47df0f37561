/*
 * faq-retriever search box. Used by the service's own page (/) and embeddable on any site:
 *
 *   <div id="faq-search"></div>
 *   <script src="https://faq.example.gov/widget.js" data-target="faq-search"></script>
 *
 * Optional attributes: data-api (base URL of the service; default: where this script came from),
 * data-collection (a named collection; default: the service's default), data-collections="pick" (a
 * picker when the service serves several), data-top-k (default 5), data-placeholder, data-label (the box's label; "" hides it visually,
 * screen readers still read "常见问题搜索"), data-no-match (the message when nothing answers),
 * data-feedback ("off" hides the 有帮助/没帮助 buttons under an opened answer; they post to
 * /v1/feedback, which the service records when RETRIEVER_FEEDBACK_LOG is set), data-suggestions ("off"
 * hides the 您是不是想问： links offered when nothing answers with confidence). Another site needs
 * the service's CORS setting (RETRIEVER_CORS_ORIGINS) to allow its origin.
 *
 * Answers may use a Markdown subset (paragraphs, lists, links, bold; docs/answers-markup.md), rendered
 * from DOM nodes and text only: anything else in an answer is shown as typed.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var apiBase = (script.dataset.api || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var topK = parseInt(script.dataset.topK || "5", 10);
  // data-collection: search one named collection; data-collections="pick": let the reader choose
  // among the service's collections when it serves more than one.
  var collection = script.dataset.collection || "";
  var PICK = script.dataset.collections === "pick";
  var DEBOUNCE_MS = 250;
  var FEEDBACK = script.dataset.feedback !== "off";
  var SUGGEST = script.dataset.suggestions !== "off";  // 您是不是想问： links (the response's suggestions)
  var TEXT = {
    placeholder: script.dataset.placeholder || "请输入您的问题，例如：注销进度怎么查",
    label: script.dataset.label === undefined ? "常见问题搜索" : script.dataset.label,
    noMatch: script.dataset.noMatch || "没有找到相关问题，请联系人工客服。",
    askFeedback: "这个回答有帮助吗？",
    helpful: "有帮助",
    unhelpful: "没帮助",
    thanks: "感谢您的反馈！",
    feedbackFailed: "反馈未能提交：",
    ambiguous: "以下问题可能与您的问题相关：",
    didYouMean: "您是不是想问：",
    error: "查询出错：",
    network: "无法连接服务，请稍后再试。",
    matched: "匹配问题：",
    score: "相似度",
    searching: "正在查询…",
    results: function (n) { return "找到 " + n + " 个相关问题，按 ↓ 浏览"; },
  };

  var STYLE = [
    ":host{display:block;font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;",
    "color:#1f2933;max-width:48rem}",
    "label{display:block;font-weight:600;margin-bottom:.4rem}",
    "label.hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}",
    "input{box-sizing:border-box;width:100%;font-size:1.1rem;padding:.7rem .9rem;border:2px solid #9aa5b1;border-radius:.5rem}",
    "input:focus{outline:none;border-color:#1d4ed8}",
    ".status{min-height:1.5rem;margin:.6rem 0;color:#52606d}",
    ".status.no-match{color:#b42318;font-weight:600}.status.error{color:#b42318}",
    "ol{list-style:none;margin:0;padding:0}",
    "li{border:1px solid #d9e2ec;border-radius:.5rem;padding:.8rem 1rem;margin-bottom:.6rem;cursor:pointer}",
    "li:focus{outline:3px solid #1d4ed8;outline-offset:1px}",
    "li h3{font-size:1rem;margin:0 0 .4rem}",
    ".answer{white-space:pre-wrap;margin:.4rem 0;line-height:1.6;overflow-wrap:anywhere}",
    ".answer p{margin:0 0 .4rem}.answer p:last-child{margin-bottom:0}",
    ".answer ul,.answer ol{margin:0 0 .4rem;padding-left:1.5rem;white-space:normal}",
    ".answer ul{list-style:disc}.answer ol{list-style:decimal}",
    ".answer li{border:0;border-radius:0;padding:0;margin:0 0 .2rem;cursor:inherit;white-space:pre-wrap}",
    "li:not(.open) .answer{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}",
    ".meta{font-size:.85rem;color:#52606d;display:flex;flex-wrap:wrap;gap:.3rem 1rem}",
    ".feedback{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;margin-top:.6rem;font-size:.9rem}",
    "li:not(.open) .feedback{display:none}",
    ".feedback button{font:inherit;padding:.3rem .8rem;border:1px solid #9aa5b1;border-radius:.4rem;background:#fff;cursor:pointer}",
    ".feedback button:focus{outline:3px solid #1d4ed8;outline-offset:1px}",
    ".feedback button:disabled{cursor:default;opacity:.6}",
    ".suggestions{margin:.2rem 0 .8rem}.suggestions[hidden]{display:none}",
    ".suggestions ul{list-style:none;margin:.3rem 0 0;padding:0}.suggestions li{border:0;padding:.2rem 0;margin:0;cursor:auto}",
    ".suggestions a{color:#1d4ed8;text-decoration:underline;cursor:pointer}",
    ".suggestions a:focus{outline:3px solid #1d4ed8;outline-offset:1px}",
    "@media (max-width:480px){input{font-size:1rem}li{padding:.7rem}}",
  ].join("");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // An answer's Markdown subset, as retriever/markup.py reads it: paragraphs (blank lines apart), lists
  // ("- " / "1. " lines), [text](url) links when the URL is http(s), mailto or tel, and **bold**. Built
  // from DOM nodes and textContent, never HTML: <script>, onerror=, entities and javascript: links are
  // shown as typed, not run.
  var TOKEN = /\\([\\\[\]*])|\[((?:\\[\\\[\]]|[^\[\]\\\n])+)\]\(([^()\s]+)\)|\*\*/g;
  var BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
  var NUMBER = /^\s{0,3}\d{1,3}(?:[.)]\s+|、\s*)(.*)$/;
  var SAFE_SCHEMES = ["http:", "https:", "mailto:", "tel:"];

  function safeUrl(href) {
    if (/[\u0000-\u0020<>"'`]/.test(href)) return null;
    try {
      var url = new URL(href);
      if (SAFE_SCHEMES.indexOf(url.protocol) < 0) return null;
      if ((url.protocol === "http:" || url.protocol === "https:") && !url.host) return null;
      return url.href;
    } catch (e) {
      return null;  // relative or malformed: no base to resolve it against on another site
    }
  }

  function inlineInto(parent, text) {
    var markers = (text.match(TOKEN) || []).filter(function (t) { return t === "**"; }).length;
    var stack = [parent], last = 0, seen = 0, match;
    TOKEN.lastIndex = 0;
    while ((match = TOKEN.exec(text)) !== null) {
      var top = stack[stack.length - 1];
      top.append(document.createTextNode(text.slice(last, match.index)));
      last = match.index + match[0].length;
      if (match[1] !== undefined) {
        top.append(document.createTextNode(match[1]));  // an escaped character
      } else if (match[2] !== undefined) {
        var href = safeUrl(match[3]);
        if (!href) { top.append(document.createTextNode(match[0])); continue; }
        var link = el("a", { href: href, target: "_blank", rel: "noopener noreferrer" },
                      match[2].replace(/\\([\\\[\]])/g, "$1"));
        link.addEventListener("click", function (event) { event.stopPropagation(); });  // opens, does not fold
        top.append(link);
      } else {
        seen += 1;
        if (stack.length > 1) {
          stack.pop();
        } else if (seen < markers) {  // opens a run that a later marker closes
          var bold = el("strong", {});
          top.append(bold);
          stack.push(bold);
        } else {
          top.append(document.createTextNode("**"));
        }
      }
    }
    stack[stack.length - 1].append(document.createTextNode(text.slice(last)));
  }

  function answerNode(text) {
    var node = el("div", { class: "answer" });
    var chunks = text.replace(/\r\n?/g, "\n").replace(/^\n+|\n+$/g, "").split(/\n[ \t\u3000]*\n/);
    chunks.forEach(function (chunk) {
      if (!chunk.trim()) return;
      var run = [], list = null, kind = null;
      function closeRun() {
        if (!run.length) return;
        var p = el("p", {});
        inlineInto(p, run.join("\n"));
        node.append(p);
        run = [];
      }
      chunk.split("\n").forEach(function (line) {
        var found = BULLET.exec(line), itemKind = found ? "ul" : null;
        if (!found) { found = NUMBER.exec(line); itemKind = found ? "ol" : null; }
        if (!found) { list = null; run.push(line); return; }
        closeRun();
        if (!list || kind !== itemKind) {
          list = el(itemKind, {});
          kind = itemKind;
          node.append(list);
        }
        var item = el("li", {});
        inlineInto(item, found[1]);
        list.append(item);
      });
      closeRun();
    });
    return node;
  }

  // A <select> of the service's collections, shown only when there are several.
  function addCollectionPicker(root, input, onChange) {
    fetch(apiBase + "/v1/collections", { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body || body.collections.length < 2) return;
        var select = el("select", { id: "collection", "aria-label": "问题分类" });
        body.collections.forEach(function (c) {
          select.append(el("option", { value: c.name }, c.name + (c.entries ? "（" + c.entries + "）" : "")));
        });
        collection = collection || body.default;
        select.value = body.collections.some(function (c) { return c.name === collection; })
          ? collection : body.collections[0].name;
        collection = select.value;
        select.addEventListener("change", function () { collection = select.value; onChange(); });
        root.insertBefore(select, input);
      })
      .catch(function () { /* no picker: the default collection is searched */ });
  }

  function mount(host) {
    var root = host.attachShadow({ mode: "open" });
    var style = el("style", {}, STYLE);
    var label = el("label", { for: "q", class: TEXT.label ? "" : "hidden" }, TEXT.label || "常见问题搜索");
    var input = el("input", { id: "q", type: "search", autocomplete: "off", placeholder: TEXT.placeholder,
                              "aria-controls": "results", "aria-describedby": "status" });
    var status = el("div", { id: "status", class: "status", role: "status", "aria-live": "polite" });
    // "Did you mean": links that ask an entry's standard question instead (ambiguous or no_match).
    var suggestions = el("div", { id: "suggestions", class: "suggestions", hidden: "" });
    var list = el("ol", { id: "results", "aria-label": "搜索结果" });
    root.append(style, label, input, status, suggestions, list);
    if (PICK) addCollectionPicker(root, input, function () { if (input.value) search(input.value); });

    var timer = null;
    var inFlight = null;

    function setStatus(text, kind) {
      status.textContent = text;
      status.className = "status" + (kind ? " " + kind : "");
    }

    // 有帮助 / 没帮助 under an opened answer: one vote per answer shown.
    function feedbackRow(query, hit, body) {
      var row = el("div", { class: "feedback" });
      var note = el("span", { class: "feedback-note", role: "status" }, TEXT.askFeedback);
      var yes = el("button", { type: "button", "data-helpful": "true" }, TEXT.helpful);
      var no = el("button", { type: "button", "data-helpful": "false" }, TEXT.unhelpful);
      row.append(note, yes, no);
      row.addEventListener("click", function (event) {
        var button = event.target.closest("button");
        event.stopPropagation();  // a vote does not fold the answer
        if (!button) return;
        yes.disabled = no.disabled = true;
        sendFeedback({ query: query, faq_id: hit.faq_id, helpful: button.dataset.helpful === "true",
                       index_version: body.index_version }, note, yes, no);
      });
      return row;
    }

    function sendFeedback(vote, note, yes, no) {
      fetch(apiBase + "/v1/feedback", { method: "POST", body: JSON.stringify(vote),
                                        headers: { "Content-Type": "application/json", Accept: "application/json" } })
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (answer) {
            if (!response.ok) throw new Error(answer.message || "HTTP " + response.status);
            note.textContent = TEXT.thanks;
          });
        })
        .catch(function (error) {
          note.textContent = TEXT.feedbackFailed + (error instanceof TypeError ? TEXT.network : error.message);
          yes.disabled = no.disabled = false;
        });
    }

    function renderSuggestions(items) {
      suggestions.textContent = "";
      suggestions.hidden = !items || !items.length;
      if (suggestions.hidden) return;
      var links = el("ul", { "aria-label": TEXT.didYouMean });
      items.forEach(function (suggestion) {
        var link = el("a", { href: "#", "data-faq-id": suggestion.faq_id }, suggestion.question);
        link.addEventListener("click", function (event) {
          event.preventDefault();  // runs that question here, in place of the one typed
          clearTimeout(timer);
          input.value = suggestion.question;
          search(suggestion.question);
        });
        var item = el("li");
        item.append(link);
        links.append(item);
      });
      suggestions.append(el("span", {}, TEXT.didYouMean), links);
    }

    function render(body) {
      list.textContent = "";
      renderSuggestions(SUGGEST ? body.suggestions : []);
      if (body.decision === "no_match" || body.results.length === 0) {
        setStatus(TEXT.noMatch, "no-match");
        return;
      }
      setStatus(body.decision === "ambiguous" ? TEXT.ambiguous : TEXT.results(body.results.length));
      body.results.forEach(function (hit) {
        var item = el("li", { tabindex: "0", "data-faq-id": hit.faq_id });
        var meta = el("div", { class: "meta" });
        meta.append(el("span", {}, TEXT.matched + hit.matched_text),
                    el("span", {}, TEXT.score + " " + hit.score.toFixed(3)));
        item.append(el("h3", {}, hit.question), answerNode(hit.answer), meta);
        if (FEEDBACK) item.append(feedbackRow(body.query, hit, body));
        list.append(item);
      });
    }

    function search(query) {
      if (inFlight) inFlight.abort();  // a stale answer must never replace a newer one
      if (!query.trim()) {
        list.textContent = "";
        renderSuggestions([]);
        setStatus("");
        return;
      }
      var controller = new AbortController();
      inFlight = controller;
      setStatus(TEXT.searching);
      var route = collection ? "/v1/collections/" + encodeURIComponent(collection) + "/search" : "/v1/search";
      var url = apiBase + route + "?q=" + encodeURIComponent(query) + "&top_k=" + topK;
      fetch(url, { signal: controller.signal, headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.json().catch(function () {
            throw new Error("HTTP " + response.status);  // not our JSON: a proxy or the server's front door
          }).then(function (body) {
            if (!response.ok) throw new Error(body.message || response.statusText);
            return body;
          });
        })
        .then(function (body) { if (inFlight === controller) render(body); })
        .catch(function (error) {
          if (error.name === "AbortError") return;
          list.textContent = "";
          renderSuggestions([]);
          setStatus(error instanceof TypeError ? TEXT.network : TEXT.error + error.message, "error");
        });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { search(input.value); }, DEBOUNCE_MS);
    });

    // Keyboard: ↓ from the box to the results, ↑/↓ between them, Enter/Space opens an answer, Esc back.
    root.addEventListener("keydown", function (event) {
      var items = Array.prototype.slice.call(list.children);
      var index = items.indexOf(root.activeElement);
      if (event.key === "ArrowDown" && items.length) {
        event.preventDefault();
        items[Math.min(index + 1, items.length - 1)].focus();
      } else if (event.key === "ArrowUp" && index >= 0) {
        event.preventDefault();
        (index === 0 ? input : items[index - 1]).focus();
      } else if ((event.key === "Enter" || event.key === " ") && index >= 0) {
        event.preventDefault();
        items[index].classList.toggle("open");
      } else if (event.key === "Escape") {
        input.focus();
      }
    });
    list.addEventListener("click", function (event) {
      var item = event.target.closest("li");
      if (item) item.classList.toggle("open");
    });
  }

  function start() {
    var id = script.dataset.target || "faq-search";
    var target = document.getElementById(id);
    if (!target) {  // no container given: place the box where the script stands, or at the end of the page
      target = el("div", { id: id });
      var inBody = script.parentNode && script.parentNode !== document.head;
      if (inBody) script.parentNode.insertBefore(target, script); else document.body.appendChild(target);
    }
    mount(target);
  }

  // The script may come before its container in the page: wait for the document if it is still loading.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
