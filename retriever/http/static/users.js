/*
 * The workbench's user panel (/admin, admin only): who is logged in, and the users: roles, password,
 * API token (shown once), disable, remove. It tells the other panels who is logged in with a
 * "workbench-user" event on document ({user, roles, via, users_file, audit_log}; null when logged out).
 * All text from the service is set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var ROLES = { editor: "编辑", reviewer: "审核", admin: "管理员" };
  var $ = function (id) { return document.getElementById(id); };

  var el = Workbench.el, api = Workbench.call;

  function say(text, isError) {
    $("users-notice").textContent = text;
    $("users-notice").className = "notice" + (isError ? " error" : "");
  }

  function roleNames(roles) {
    return roles.map(function (role) { return ROLES[role] || role; }).join("、");
  }

  // --- who is logged in -------------------------------------------------------------------------

  function announce(me) {
    document.dispatchEvent(new CustomEvent("workbench-user", { detail: me }));
  }

  function loggedIn() {
    api("GET", "/admin/api/me").then(function (me) {
      $("whoami").textContent = me.user + "（" + roleNames(me.roles) + "）";
      $("whoami").hidden = false;
      $("own-password").hidden = !me.own_password;
      var admin = me.roles.indexOf("admin") >= 0;
      $("users-panel").hidden = !(admin && me.users_file);
      if (admin && me.users_file) loadUsers();
      announce(me);
    }).catch(function () { loggedOut(); });
  }

  function loggedOut() {
    $("whoami").hidden = true;
    $("whoami").textContent = "";
    $("own-password").hidden = true;
    showPasswordForm(false);
    passwordNotice("", false);
    $("users-panel").hidden = true;
    announce(null);
  }

  // workbench.js shows and hides #bench on login and logout: follow it.
  new MutationObserver(function () {
    if ($("bench").hidden) loggedOut(); else loggedIn();
  }).observe($("bench"), { attributes: true, attributeFilter: ["hidden"] });

  // --- your own password ------------------------------------------------------------------------

  function showPasswordForm(shown) {
    $("own-password-form").hidden = !shown;
    $("own-password").setAttribute("aria-expanded", String(shown));
    ["own-password-current", "own-password-new", "own-password-repeat"].forEach(function (id) { $(id).value = ""; });
    if (shown) $("own-password-current").focus();
  }

  function passwordNotice(text, isError) {
    $("own-password-notice").textContent = text;
    $("own-password-notice").className = "notice" + (isError ? " error" : "");
  }

  $("own-password").addEventListener("click", function () {
    passwordNotice("", false);
    showPasswordForm($("own-password-form").hidden);
  });

  $("own-password-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var fresh = $("own-password-new").value;
    if (fresh !== $("own-password-repeat").value) {
      passwordNotice("两次输入的新密码不一致", true);
      return;
    }
    api("POST", "/admin/api/me/password", { current_password: $("own-password-current").value, new_password: fresh })
      .then(function () {
        showPasswordForm(false);
        passwordNotice("密码已修改：用旧密码登录的其他会话已退出", false);
      })
      .catch(function (error) { passwordNotice(error.message, true); });
  });

  // --- the users --------------------------------------------------------------------------------

  function loadUsers() {
    api("GET", "/admin/api/users").then(function (answer) {
      var box = $("users");
      box.textContent = "";
      if (!answer.users.length) {
        box.appendChild(el("p", { "class": "muted" }, "还没有用户：管理令牌以 admin 身份登录。"));
        return;
      }
      var table = el("table");
      var head = el("tr");
      ["用户", "角色", "状态", "操作"].forEach(function (title) { head.appendChild(el("th", {}, title)); });
      table.appendChild(head);
      answer.users.forEach(function (user) { table.appendChild(userRow(user)); });
      box.appendChild(table);
    }).catch(function (error) { say(error.message, true); });
  }

  function userRow(user) {
    var row = el("tr", { "data-user": user.name });
    row.appendChild(el("td", {}, user.name));
    var roles = el("td");
    Object.keys(ROLES).forEach(function (role) {
      var label = el("label");
      var box = el("input", { type: "checkbox", value: role, "aria-label": user.name + " " + ROLES[role] });
      box.checked = user.roles.indexOf(role) >= 0;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + ROLES[role] + " "));
      roles.appendChild(label);
    });
    row.appendChild(roles);
    var state = [user.disabled ? "已停用" : "正常", user.password ? "有密码" : "无密码",
                 user.token ? "有 API 令牌" : "无 API 令牌"];
    row.appendChild(el("td", {}, state.join("，")));
    var actions = el("td", { "class": "actions" });
    actions.appendChild(button("保存角色", function () {
      var chosen = Array.prototype.filter.call(roles.querySelectorAll("input"), function (b) { return b.checked; })
        .map(function (b) { return b.value; });
      change(user.name, { roles: chosen }, "角色已保存");
    }));
    var password = el("input", { type: "password", autocomplete: "new-password", maxlength: "256",
                                 placeholder: "新密码", "aria-label": user.name + " 新密码" });
    actions.appendChild(password);
    actions.appendChild(button("设置密码", function () {
      change(user.name, { password: password.value }, "密码已设置（该用户需重新登录）");
    }));
    actions.appendChild(button(user.disabled ? "启用" : "停用", function () {
      change(user.name, { disabled: !user.disabled }, user.disabled ? "已启用" : "已停用");
    }));
    actions.appendChild(button("新 API 令牌", function () { issueToken(user.name); }));
    actions.appendChild(button("删除", function () {
      if (!window.confirm("删除用户 " + user.name + "？")) return;
      api("DELETE", "/admin/api/users/" + encodeURIComponent(user.name))
        .then(function () { say("已删除 " + user.name); loadUsers(); })
        .catch(function (error) { say(error.message, true); });
    }));
    row.appendChild(actions);
    return row;
  }

  function button(text, onClick) {
    var node = el("button", { type: "button" }, text);
    node.addEventListener("click", onClick);
    return node;
  }

  function change(name, body, done) {
    api("PATCH", "/admin/api/users/" + encodeURIComponent(name), body)
      .then(function () { say(name + "：" + done); loadUsers(); })
      .catch(function (error) { say(error.message, true); });
  }

  function issueToken(name) {
    api("POST", "/admin/api/users/" + encodeURIComponent(name) + "/token").then(function (answer) {
      say(name + " 的新 API 令牌（只显示这一次，请立即保存）：" + answer.token);
      loadUsers();
    }).catch(function (error) { say(error.message, true); });
  }

  $("user-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var roles = Array.prototype.filter.call(document.querySelectorAll("#user-form input[name=role]"),
                                            function (b) { return b.checked; }).map(function (b) { return b.value; });
    var body = { name: $("user-name").value.trim(), roles: roles, password: $("user-password").value };
    api("POST", "/admin/api/users", body).then(function (answer) {
      $("user-name").value = "";
      $("user-password").value = "";
      say("已添加 " + answer.user.name + "（" + roleNames(answer.user.roles) + "）");
      loadUsers();
    }).catch(function (error) { say(error.message, true); });
  });
})();
