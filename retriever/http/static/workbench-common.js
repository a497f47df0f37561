/*
 * What every workbench panel script uses (loaded before them): building elements, and calling the JSON API
 * with the header the service asks of a session (X-Requested-With: workbench).
 * Text is set with textContent, never parsed as HTML.
 */
window.Workbench = (function () {
  "use strict";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Resolves with {status, ok, body} for every answer (body {} when it is not JSON): the caller decides.
  function request(method, path, body) {
    var options = { method: method, credentials: "same-origin",
                    headers: { "X-Requested-With": "workbench", Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        return { status: response.status, ok: response.ok, body: answer };
      });
    });
  }

  // Resolves with the body of a 2xx answer; rejects with an Error carrying the service's message.
  function call(method, path, body) {
    return request(method, path, body).then(function (result) {
      if (!result.ok) throw new Error(result.body.message || "HTTP " + result.status);
      return result.body;
    });
  }

  // A panel that could not load says why, in place of its content.
  function showError(box, error) {
    box.textContent = "";
    box.appendChild(el("p", { "class": "error", role: "alert" }, error.message));
  }

  return { el: el, request: request, call: call, showError: showError };
})();
